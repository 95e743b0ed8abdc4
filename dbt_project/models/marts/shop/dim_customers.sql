with

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

customer_orders as (

    select
        customer_id,
        count(*) as order_count,
        sum(total_amount) as lifetime_value,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date

    from orders
    group by customer_id

),

final as (

    select

        ----------  ids
        customers.customer_id,

        ----------  text
        customers.first_name,
        customers.last_name,
        customers.email,

        ----------  numerics
        cast(coalesce(customer_orders.order_count, 0) as integer) as order_count,
        cast(coalesce(customer_orders.lifetime_value, 0) as decimal(18, 2)) as lifetime_value,

        ----------  dates
        customer_orders.first_order_date,
        customer_orders.last_order_date

    from customers
    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

)

select * from final
