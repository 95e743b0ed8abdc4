with

source as (

    select * from {{ source('shop', 'orders') }}
    {{ limit_to_dev_window('order_date', source('shop', 'orders')) }}

),

-- the latest tombstone per deleted row (one small hash table: the join below streams the rows past it)
deleted as (

    select row_id, max(deleted_at) as deleted_at
    from {{ source('shop', 'deletions') }}
    where table_name = 'orders'
    group by row_id

),

-- a row deleted in the shop (its tombstone is at or after the row's last update) is gone from here on
current_rows as (

    select source.* from source
    left join deleted on deleted.row_id = source.order_id
    where not coalesce(deleted.deleted_at >= source.updated_at, false)

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
        cast(updated_at as timestamp) as updated_at,
        cast(order_date as timestamp) as ordered_at,
        cast(order_date as date) as order_date,
        {{ to_loaded_at('_sling_loaded_at', source('shop', 'orders')) }} as loaded_at

    from current_rows

)

select * from renamed
