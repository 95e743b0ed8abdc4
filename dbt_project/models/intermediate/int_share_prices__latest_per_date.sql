with

share_prices as (

    select * from {{ ref('stg_files__share_prices') }}

),

ranked as (

    select
        *,
        -- when several drop files carry the same trading date, the latest file wins:
        -- by its drop date (the file name), then by load time
        row_number() over (
            partition by trading_date
            order by file_drop_date desc nulls last, source_file desc, loaded_at desc nulls last
        ) as file_rank

    from share_prices

),

latest_per_date as (

    select * exclude (file_rank)
    from ranked
    where file_rank = 1

)

select * from latest_per_date
