with

source as (

    select * from {{ source('nasa', 'asteroids') }}
    {{ limit_to_dev_window('close_approach_date', source('nasa', 'asteroids')) }}

),

renamed as (

    select

        ----------  ids
        _dlt_id as asteroid_observation_id,
        cast(neo_reference_id as varchar) as neo_reference_id,

        ----------  text
        name as asteroid_name,
        nasa_jpl_url,

        ----------  dates
        cast(close_approach_date as date) as feed_date,

        ----------  numerics
        cast(absolute_magnitude_h as double) as absolute_magnitude_h,
        cast(estimated_diameter__kilometers__estimated_diameter_min as double) as estimated_diameter_min_km,
        cast(estimated_diameter__kilometers__estimated_diameter_max as double) as estimated_diameter_max_km,
        cast(estimated_diameter__meters__estimated_diameter_min as double) as estimated_diameter_min_m,
        cast(estimated_diameter__meters__estimated_diameter_max as double) as estimated_diameter_max_m,
        cast(estimated_diameter__miles__estimated_diameter_min as double) as estimated_diameter_min_mi,
        cast(estimated_diameter__miles__estimated_diameter_max as double) as estimated_diameter_max_mi,
        cast(estimated_diameter__feet__estimated_diameter_min as double) as estimated_diameter_min_ft,
        cast(estimated_diameter__feet__estimated_diameter_max as double) as estimated_diameter_max_ft,

        ----------  booleans
        cast(is_potentially_hazardous_asteroid as boolean) as is_potentially_hazardous,

        ----------  lineage
        _dlt_load_id as dlt_load_id

    from source

)

select * from renamed
