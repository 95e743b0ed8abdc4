with

source as (

    select * from {{ source('shop', 'orders') }}
    {{ limit_to_dev_window('order_date', source('shop', 'orders')) }}

),

renamed as (

    select

        ----------  ids
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,
        cast(product_id as bigint) as product_id,

        ----------  numerics
        cast(quantity as integer) as quantity,
        cast(total_amount as decimal(10, 2)) as total_amount,

        ----------  timestamps
        cast(order_date as timestamp) as ordered_at,
        cast(order_date as date) as order_date,
        {{ to_loaded_at('_sling_loaded_at') }} as loaded_at

    from source

)

select * from renamed
