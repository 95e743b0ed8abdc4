-- marts.dim_asteroids: one row per object
select
    neo_reference_id, asteroid_name, nasa_jpl_url, absolute_magnitude_h, estimated_diameter_min_km,
    estimated_diameter_max_km, is_potentially_hazardous, first_feed_date, last_feed_date
from marts.dim_asteroids
