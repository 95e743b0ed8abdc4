-- The products' revenue and units add up to the orders' totals: every order's product is in dim_products.
-- Returns a row (a failure) when the sums differ.
-- reported in Dagster as an asset check on dim_products (a test with several parents needs to be told)
{{ config(meta={'dagster': {'ref': {'name': 'dim_products'}}}) }}
with

products as (

    select
        coalesce(sum(revenue), 0) as total_revenue,
        coalesce(sum(units_sold), 0) as total_units

    from {{ ref('dim_products') }}

),

orders as (

    select
        coalesce(sum(total_amount), 0) as total_amount,
        coalesce(sum(quantity), 0) as total_units

    from {{ ref('fct_orders') }}

)

select
    products.total_revenue,
    orders.total_amount,
    products.total_units,
    orders.total_units as order_units

from products
cross join orders
where products.total_revenue != orders.total_amount
    or products.total_units != orders.total_units
