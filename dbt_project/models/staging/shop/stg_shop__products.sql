with

source as (

    select * from {{ source('shop', 'products') }}

),

deleted as (

    select row_id, deleted_at from {{ source('shop', 'deletions') }} where table_name = 'products'

),

-- a row deleted in the shop (its tombstone is at or after the row's last update) is gone from here on
current_rows as (

    select * from source
    where not exists (
        select 1 from deleted
        where deleted.row_id = source.product_id and deleted.deleted_at >= source.updated_at
    )

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
        {{ to_loaded_at('_sling_loaded_at') }} as loaded_at

    from current_rows

)

select * from renamed
