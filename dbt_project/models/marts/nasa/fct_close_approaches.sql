with

asteroids as (

    select * from {{ ref('stg_nasa__asteroids') }}

),

close_approaches as (

    select * from {{ ref('stg_nasa__close_approaches') }}

),

joined as (

    select
        asteroids.neo_reference_id,
        asteroids.asteroid_name,
        asteroids.is_potentially_hazardous,
        asteroids.dlt_load_id,
        close_approaches.*

    from close_approaches
    inner join asteroids
        on close_approaches.asteroid_observation_id = asteroids.asteroid_observation_id

),

-- the same approach can be listed again when a feed day is reloaded: keep the latest load
deduplicated as (

    select *
    from joined
    qualify row_number() over (
        partition by neo_reference_id, approach_date, orbiting_body
        order by dlt_load_id desc, approach_index
    ) = 1

),

final as (

    select

        ----------  ids
        neo_reference_id || '-' || strftime(approach_date, '%Y%m%d') || '-' || coalesce(orbiting_body, '')
            as close_approach_id,
        neo_reference_id,

        ----------  text
        asteroid_name,
        orbiting_body,

        ----------  dates
        approach_date,
        approached_at,

        ----------  numerics
        miss_distance_km,
        miss_distance_lunar,
        relative_velocity_kps,

        ----------  booleans
        is_potentially_hazardous

    from deduplicated

)

select * from final
