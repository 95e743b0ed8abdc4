with

source as (

    select * from {{ source('shop', 'customers') }}

),

-- the latest tombstone per deleted row (one small hash table: the join below streams the rows past it)
deleted as (

    select row_id, max(deleted_at) as deleted_at
    from {{ source('shop', 'deletions') }}
    where table_name = 'customers'
    group by row_id

),

-- a row deleted in the shop (its tombstone is at or after the row's last update) is gone from here on
current_rows as (

    select source.* from source
    left join deleted on deleted.row_id = source.customer_id
    where not coalesce(deleted.deleted_at >= source.updated_at, false)

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
        {{ to_loaded_at('_sling_loaded_at', source('shop', 'customers')) }} as loaded_at

    from current_rows

)

select * from renamed
