with

source as (

    select * from {{ source('hackernews', 'items') }}
    {{ limit_to_dev_window("to_timestamp(time) at time zone 'UTC'", source('hackernews', 'items')) }}

),

renamed as (

    select

        ----------  ids
        cast(id as bigint) as comment_id,
        cast(parent as bigint) as parent_id,

        ----------  text
        "by" as author,
        text as comment_text,

        ----------  booleans
        coalesce(cast(deleted as boolean), false) as is_deleted,
        coalesce(cast(dead as boolean), false) as is_dead,

        ----------  timestamps
        to_timestamp(cast(time as bigint)) as posted_at,
        cast(_loaded_at as timestamptz) as loaded_at,

        ----------  lineage
        _dlt_load_id as dlt_load_id

    from source
    where type = 'comment'

),

-- live comments only: a deleted comment is only an id and a time (no parent, no text), a dead one is hidden
final as (

    select * exclude (is_deleted, is_dead)
    from renamed
    where not is_deleted and not is_dead

)

select * from final
