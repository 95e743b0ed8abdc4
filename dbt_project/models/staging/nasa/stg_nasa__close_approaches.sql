with

source as (

    select * from {{ source('nasa', 'asteroids__close_approach_data') }}
    {{ limit_to_dev_window('close_approach_date', source('nasa', 'asteroids__close_approach_data')) }}

),

renamed as (

    select

        ----------  ids
        _dlt_id as close_approach_row_id,
        _dlt_parent_id as asteroid_observation_id,
        cast(_dlt_list_idx as integer) as approach_index,

        ----------  dates
        cast(close_approach_date as date) as approach_date,
        -- epoch_date_close_approach is in milliseconds
        to_timestamp(cast(epoch_date_close_approach as bigint) / 1000) as approached_at,

        ----------  numerics (strings in the feed)
        cast(relative_velocity__kilometers_per_second as double) as relative_velocity_kps,
        cast(relative_velocity__kilometers_per_hour as double) as relative_velocity_kph,
        cast(relative_velocity__miles_per_hour as double) as relative_velocity_mph,
        cast(miss_distance__astronomical as double) as miss_distance_au,
        cast(miss_distance__lunar as double) as miss_distance_lunar,
        cast(miss_distance__kilometers as double) as miss_distance_km,
        cast(miss_distance__miles as double) as miss_distance_mi,

        ----------  text
        orbiting_body

    from source

)

select * from renamed
