with

close_approaches as (

    select * from {{ ref('fct_close_approaches') }}

),

daily as (

    select
        approach_date,
        count(distinct neo_reference_id) as objects,
        count(distinct neo_reference_id) filter (where is_potentially_hazardous) as hazardous_objects,
        min(miss_distance_km) as closest_miss_distance_km,
        max(relative_velocity_kps) as fastest_relative_velocity_kps

    from close_approaches
    group by approach_date

),

final as (

    select

        ----------  ids
        approach_date,

        ----------  numerics
        cast(objects as integer) as objects,
        cast(hazardous_objects as integer) as hazardous_objects,
        closest_miss_distance_km,
        fastest_relative_velocity_kps

    from daily

)

select * from final
