with

orders as (

    select * from {{ ref('fct_orders') }}

),

order_days as (

    select
        min(order_date) as first_order_date,
        max(order_date) as last_order_date

    from orders

),

-- every day from the first to the last order, so a day without orders shows as 0, not as a gap
calendar as (

    select cast(unnest(generate_series(first_order_date, last_order_date, interval 1 day)) as date) as order_date
    from order_days

),

daily as (

    select
        order_date,
        count(*) as order_count,
        count(distinct customer_id) as customer_count,
        sum(quantity) as units_sold,
        sum(total_amount) as revenue

    from orders
    group by order_date

),

final as (

    select

        ----------  ids
        calendar.order_date,

        ----------  numerics
        cast(coalesce(daily.order_count, 0) as integer) as order_count,
        cast(coalesce(daily.customer_count, 0) as integer) as customer_count,
        cast(coalesce(daily.units_sold, 0) as bigint) as units_sold,
        cast(coalesce(daily.revenue, 0) as decimal(18, 2)) as revenue

    from calendar
    left join daily
        on calendar.order_date = daily.order_date

)

select * from final
