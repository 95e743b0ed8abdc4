with

share_prices as (

    select * from {{ ref('int_share_prices__latest_per_date') }}

),

with_windows as (

    select
        *,
        lag(share_price) over by_date as previous_share_price,
        -- moving averages over trading days (rows), as price charts draw them; the count tells whether a full
        -- window of trading days lies behind the row
        avg(share_price) over last_7_trading_days as average_7d,
        count(*) over last_7_trading_days as trading_days_7d,
        avg(share_price) over last_30_trading_days as average_30d,
        count(*) over last_30_trading_days as trading_days_30d

    from share_prices
    window
        by_date as (order by trading_date),
        last_7_trading_days as (order by trading_date rows between 6 preceding and current row),
        last_30_trading_days as (order by trading_date rows between 29 preceding and current row)

),

final as (

    select

        ----------  ids
        trading_date,

        ----------  numerics
        share_price,
        previous_share_price,
        -- return since the previous trading date in the data; null on the first date
        cast(share_price / nullif(previous_share_price, 0) - 1 as double) as daily_return,
        -- null until a full window of trading days is available: a 30-day average of 3 days would mislead
        cast(case when trading_days_7d = 7 then average_7d end as double) as moving_average_7d,
        cast(case when trading_days_30d = 30 then average_30d end as double) as moving_average_30d,
        amount,
        spend,
        "shift",
        spread,

        ----------  lineage
        source_file,
        loaded_at

    from with_windows

)

select * from final
