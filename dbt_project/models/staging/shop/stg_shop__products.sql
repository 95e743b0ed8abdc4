with

source as (

    select * from {{ source('shop', 'products') }}

),

-- the latest tombstone per deleted row (one small hash table: the join below streams the rows past it)
deleted as (

    select row_id, max(deleted_at) as deleted_at
    from {{ source('shop', 'deletions') }}
    where table_name = 'products'
    group by row_id

),

-- a row deleted in the shop (its tombstone is at or after the row's last update) is gone from here on
current_rows as (

    select source.* from source
    left join deleted on deleted.row_id = source.product_id
    where not coalesce(deleted.deleted_at >= source.updated_at, false)

),

renamed as (

    select

        ----------  ids
        cast(product_id as bigint) as product_id,

        ----------  text
        name as product_name,
        description as product_description,

        ----------  numerics
        cast(price as decimal(10, 2)) as product_price,

        ----------  timestamps
        cast(updated_at as timestamp) as updated_at,
        {{ to_loaded_at('_sling_loaded_at', source('shop', 'products')) }} as loaded_at

    from current_rows

)

select * from renamed
