with

products as (

    select * from {{ ref('stg_shop__products') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

product_orders as (

    select
        product_id,
        count(*) as order_count,
        sum(quantity) as units_sold,
        sum(total_amount) as revenue

    from orders
    group by product_id

),

final as (

    select

        ----------  ids
        products.product_id,

        ----------  text
        products.product_name,
        products.product_description,

        ----------  numerics
        products.product_price,
        cast(coalesce(product_orders.order_count, 0) as integer) as order_count,
        cast(coalesce(product_orders.units_sold, 0) as bigint) as units_sold,
        cast(coalesce(product_orders.revenue, 0) as decimal(18, 2)) as revenue

    from products
    left join product_orders
        on products.product_id = product_orders.product_id

)

select * from final
