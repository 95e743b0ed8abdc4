with

share_prices as (

    select * from {{ ref('stg_files__share_prices') }}

),

ranked as (

    select
        *,
        -- when several drop files carry the same trading date, the latest load wins; files loaded together
        -- (one run loads every file at once) are ranked by drop date, the name, then the row in the file
        row_number() over (
            partition by trading_date
            order by
                loaded_at desc nulls last,
                file_drop_date desc nulls last,
                source_file desc,
                source_row desc
        ) as load_rank

    from share_prices

),

latest_per_date as (

    select * exclude (load_rank)
    from ranked
    where load_rank = 1

)

select * from latest_per_date
