with

source as (

    select * from {{ source('hackernews', 'items') }}
    {{ limit_to_dev_window("to_timestamp(time) at time zone 'UTC'", source('hackernews', 'items')) }}

),

renamed as (

    select

        ----------  ids
        cast(id as bigint) as story_id,

        ----------  text
        "by" as author,
        title,
        url,
        text as story_text,

        ----------  numerics
        cast(score as bigint) as score,
        cast(descendants as bigint) as comment_count,

        ----------  booleans
        coalesce(cast(deleted as boolean), false) as is_deleted,
        coalesce(cast(dead as boolean), false) as is_dead,

        ----------  timestamps
        to_timestamp(cast(time as bigint)) as posted_at,
        cast(_loaded_at as timestamptz) as loaded_at,

        ----------  lineage
        _dlt_load_id as dlt_load_id

    from source
    where type = 'story'

),

-- live stories only: a deleted story is only an id and a time, a dead one is hidden on the site
final as (

    select * exclude (is_deleted, is_dead)
    from renamed
    where not is_deleted and not is_dead

)

select * from final
