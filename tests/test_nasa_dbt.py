"""The NeoWs models on the recorded feed days: every close approach, every object, and per feed day the objects
and the hazardous ones. Expected values are computed in Python from the raw rows."""

from collections import defaultdict

from tests.support import query


def test_the_marts_hold_every_close_approach_object_and_feed_day(demo_run):
    warehouse = demo_run.warehouse
    objects, hazardous = defaultdict(set), defaultdict(set)
    for neo_id, feed_day, is_hazardous in query(
        warehouse,
        "select neo_reference_id, close_approach_date, is_potentially_hazardous_asteroid from raw_nasa.asteroids",
    ):
        objects[feed_day].add(neo_id)
        if is_hazardous:
            hazardous[feed_day].add(neo_id)
    assert objects
    assert query(warehouse, "select count(*) from marts.fct_close_approaches") == query(
        warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data"
    )
    assert query(warehouse, "select count(*) from marts.dim_asteroids")[0][0] == len(set().union(*objects.values()))
    daily = query(warehouse, "select approach_date, objects, hazardous_objects from marts.fct_close_approaches_daily")
    assert {day: (count, risky) for day, count, risky in daily} == {
        day: (len(ids), len(hazardous[day])) for day, ids in objects.items()
    }
