-- marts.fct_close_approaches: one row per close approach
select
    close_approach_id, neo_reference_id, asteroid_name, orbiting_body, approach_date, approached_at,
    miss_distance_km, miss_distance_lunar, relative_velocity_kps, is_potentially_hazardous
from marts.fct_close_approaches
