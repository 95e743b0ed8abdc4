with

source as (

    select * from {{ source('shop', 'customers') }}

),

deleted as (

    select row_id, deleted_at from {{ source('shop', 'deletions') }} where table_name = 'customers'

),

-- a row deleted in the shop (its tombstone is at or after the row's last update) is gone from here on
current_rows as (

    select * from source
    where not exists (
        select 1 from deleted
        where deleted.row_id = source.customer_id and deleted.deleted_at >= source.updated_at
    )

),

renamed as (

    select

        ----------  ids
        cast(customer_id as bigint) as customer_id,

        ----------  text
        first_name,
        last_name,
        lower(trim(email)) as email,

        ----------  timestamps
        cast(updated_at as timestamp) as updated_at,
        {{ to_loaded_at('_sling_loaded_at') }} as loaded_at

    from current_rows

)

select * from renamed
