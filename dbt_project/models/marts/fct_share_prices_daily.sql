with

share_prices as (

    select * from {{ ref('int_share_prices__latest_per_date') }}

),

with_previous as (

    select
        *,
        lag(share_price) over (order by trading_date) as previous_share_price

    from share_prices

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
        amount,
        spend,
        "shift",
        spread,

        ----------  lineage
        source_file,
        loaded_at

    from with_previous

)

select * from final
