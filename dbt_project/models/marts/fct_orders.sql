with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

),

final as (

    select

        ----------  ids
        orders.order_id,
        orders.customer_id,
        orders.product_id,

        ----------  text
        products.product_name,

        ----------  numerics
        products.product_price,
        orders.quantity,
        orders.total_amount,

        ----------  timestamps
        orders.ordered_at,
        orders.order_date

    from orders
    left join products
        on orders.product_id = products.product_id

)

select * from final
