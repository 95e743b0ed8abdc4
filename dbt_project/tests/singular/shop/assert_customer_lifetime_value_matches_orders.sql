-- The lifetime values in dim_customers add up to the order totals in fct_orders: no order is lost or counted
-- twice between the two marts. Returns a row (a failure) when the sums differ.
-- reported in Dagster as an asset check on dim_customers (a test with several parents needs to be told)
{{ config(meta={'dagster': {'ref': {'name': 'dim_customers'}}}) }}
with

customers as (

    select coalesce(sum(lifetime_value), 0) as total_lifetime_value
    from {{ ref('dim_customers') }}

),

orders as (

    select coalesce(sum(total_amount), 0) as total_order_amount
    from {{ ref('fct_orders') }}

)

select
    customers.total_lifetime_value,
    orders.total_order_amount

from customers
cross join orders
where customers.total_lifetime_value != orders.total_order_amount
