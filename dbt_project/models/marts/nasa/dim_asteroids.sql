with

asteroids as (

    select * from {{ ref('stg_nasa__asteroids') }}

),

-- an object is listed on every feed day it approaches: keep its most recent listing
latest_listing as (

    select *
    from asteroids
    qualify row_number() over (
        partition by neo_reference_id
        order by feed_date desc, dlt_load_id desc
    ) = 1

),

listings as (

    select
        neo_reference_id,
        count(*) as feed_days_listed,
        min(feed_date) as first_feed_date,
        max(feed_date) as last_feed_date

    from asteroids
    group by neo_reference_id

),

final as (

    select

        ----------  ids
        latest_listing.neo_reference_id,

        ----------  text
        latest_listing.asteroid_name,
        latest_listing.nasa_jpl_url,

        ----------  numerics
        latest_listing.absolute_magnitude_h,
        latest_listing.estimated_diameter_min_km,
        latest_listing.estimated_diameter_max_km,
        cast(listings.feed_days_listed as integer) as feed_days_listed,

        ----------  booleans
        latest_listing.is_potentially_hazardous,

        ----------  dates
        listings.first_feed_date,
        listings.last_feed_date

    from latest_listing
    inner join listings
        on latest_listing.neo_reference_id = listings.neo_reference_id

)

select * from final
