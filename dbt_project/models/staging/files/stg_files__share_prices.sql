with

source as (

    select * from {{ source('files', 'share_prices') }}

),

renamed as (

    select

        ----------  ids
        _source_file || ':' || _source_row as share_price_row_id,

        ----------  dates
        cast(strptime("date", '%Y/%m/%d') as date) as trading_date,

        ----------  numerics
        cast(share_price as decimal(18, 4)) as share_price,
        cast(amount as decimal(18, 4)) as amount,
        cast(spend as decimal(18, 4)) as spend,
        cast("shift" as decimal(18, 4)) as "shift",
        cast(spread as decimal(18, 4)) as spread,

        ----------  lineage
        _source_file as source_file,
        -- the file name is its drop date (YYYY-MM-DD.csv); null when a file is named otherwise
        cast(try_strptime(regexp_extract(_source_file, '(\d{4}-\d{2}-\d{2})', 1), '%Y-%m-%d') as date)
            as file_drop_date,
        _source_row as source_row,
        _loaded_at as loaded_at

    from source

)

select * from renamed
