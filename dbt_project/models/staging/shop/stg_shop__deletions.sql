-- One row per row deleted in the shop: PostgreSQL's delete trigger leaves a tombstone (table, id, time) in
-- data.deletions, replicated like any shop table. The other shop staging models drop the rows it names.
with

source as (

    select * from {{ source('shop', 'deletions') }}

),

renamed as (

    select

        ----------  ids
        table_name,
        cast(row_id as bigint) as row_id,

        ----------  timestamps
        cast(deleted_at as timestamp) as deleted_at,
        {{ to_loaded_at('_sling_loaded_at', source('shop', 'deletions')) }} as loaded_at

    from source

)

select * from renamed
