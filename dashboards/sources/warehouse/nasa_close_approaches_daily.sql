-- marts.fct_close_approaches_daily: one row per approach date
select approach_date, objects, hazardous_objects, closest_miss_distance_km, fastest_relative_velocity_kps
from marts.fct_close_approaches_daily
