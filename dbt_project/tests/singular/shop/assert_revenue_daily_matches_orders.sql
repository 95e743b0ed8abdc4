-- Daily revenue adds up to the orders' total, and its order count to the number of orders: no order is lost or
-- counted twice between fct_orders and fct_revenue_daily. Returns a row (a failure) when either differs.
-- reported in Dagster as an asset check on fct_revenue_daily (a test with several parents needs to be told)
{{ config(meta={'dagster': {'ref': {'name': 'fct_revenue_daily'}}}) }}
with

daily as (

    select
        coalesce(sum(revenue), 0) as total_revenue,
        coalesce(sum(order_count), 0) as total_order_count

    from {{ ref('fct_revenue_daily') }}

),

orders as (

    select
        coalesce(sum(total_amount), 0) as total_amount,
        count(*) as order_count

    from {{ ref('fct_orders') }}

)

select
    daily.total_revenue,
    orders.total_amount,
    daily.total_order_count,
    orders.order_count

from daily
cross join orders
where daily.total_revenue != orders.total_amount
    or daily.total_order_count != orders.order_count
