"""Type drift at ingestion in NeoWs: a field whose JSON type changes between feed days. The real pipeline
(`run_pipeline`, Dagster in process) runs against a replay server on 127.0.0.1 serving the drifted days, and the test
checks three things: the known spellings are converted explicitly, any other value fails the run naming the column,
the value and the day, and nothing partial lands: the raw tables keep their rows, and a re-run after the source is
fixed loads every row exactly once."""

import copy
import json
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from extract.nasa.replay import RECORDED_DIR, ReplayServer
from tests.fixtures_nasa import write_feed_days
from tests.support import query, run_extracts, use_platform_env, variant_columns

# the extract assets alone: dbt's source tests on them are checks too, run by the dbt op, so leave checks out
NASA_KEY = dg.AssetKey(["raw_nasa", "asteroids"])
NASA_ASSET = dg.AssetSelection.assets(NASA_KEY).without_checks()
REAL_DAY = "2018-09-05"


def run(instance: dg.DagsterInstance, days: list[str]):
    """One pass over the NeoWs asset for `days` (no dbt), and the failure descriptions of its failed steps."""
    return run_extracts(instance, NASA_ASSET, {NASA_KEY.to_user_string(): days})


def test_neows_converts_the_known_spellings_and_fails_the_partition_on_any_other_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = json.loads((RECORDED_DIR / f"feed_{REAL_DAY}.json").read_text())["near_earth_objects"][REAL_DAY]
    assert len(real) >= 4

    def day_of(day: str) -> list[dict]:
        neos = copy.deepcopy(real)
        for neo in neos:  # the same objects on each day, as the feed lists them
            neo["close_approach_data"][0]["close_approach_date"] = day
        return neos

    spelled = day_of("2018-09-05")  # every spelling the source converts, documented in typed_value
    spelled[0].update(is_potentially_hazardous_asteroid="True", absolute_magnitude_h="26.8", orbit_class=3)
    spelled[1].update(is_potentially_hazardous_asteroid=0, neo_reference_id=int(spelled[1]["neo_reference_id"]))
    spelled[2].update(is_potentially_hazardous_asteroid=" false ", is_sentry_object="1")
    spelled[3]["close_approach_data"][0]["epoch_date_close_approach"] = "1536130800000"
    good_day, bad_day, undeclared_day = day_of("2018-09-06"), day_of("2018-09-07"), day_of("2018-09-08")
    bad_day[2]["is_potentially_hazardous_asteroid"] = "maybe"  # a boolean in no known spelling
    undeclared_day[1]["orbit_class"] = "Apollo"  # a field nobody declared, a number on 09-05
    feed = tmp_path / "feed"
    days = {date(2018, 9, 5): spelled, date(2018, 9, 6): good_day, date(2018, 9, 7): bad_day}
    write_feed_days(feed, {**days, date(2018, 9, 8): undeclared_day})

    with ReplayServer(feed) as server, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, tmp_path / "data", ELT_NASA_BASE_URL=server.base_url)
        summary, failures = run(instance, ["2018-09-05"])
        assert summary.ok and not failures, (summary.runs, failures)
        warehouse = summary.warehouse
        rows = query(
            warehouse,
            """
            select a.neo_reference_id, a.is_potentially_hazardous_asteroid, a.absolute_magnitude_h,
                a.is_sentry_object, c.epoch_date_close_approach
            from raw_nasa.asteroids a join raw_nasa.asteroids__close_approach_data c on c._dlt_parent_id = a._dlt_id
            order by a.neo_reference_id
            """,
        )
        by_id = {row[0]: row[1:] for row in rows}
        assert by_id[real[0]["neo_reference_id"]][:2] == (True, 26.8)
        assert by_id[real[1]["neo_reference_id"]][0] is False, "0 is false; the id sent as a number is text"
        assert by_id[real[2]["neo_reference_id"]][0::2] == (False, True), "' false ' and '1'"
        assert by_id[real[3]["neo_reference_id"]][3] == 1536130800000
        assert variant_columns(warehouse, "raw_nasa") == []

        # 09-06 is fine, 09-07 is not: the run fails naming column, value and day, and 09-06 does not land either
        summary, failures = run(instance, ["2018-09-06", "2018-09-07"])
        assert not summary.success
        [failure] = failures
        assert "is_potentially_hazardous_asteroid" in failure and "'maybe'" in failure, failure
        assert "feed day 2018-09-07" in failure and real[2]["neo_reference_id"] in failure, failure
        assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(len(real),)]

        # a field nobody declared changes type: dlt's contract refuses the variant column, the package is dropped
        summary, failures = run(instance, ["2018-09-08"])
        assert not summary.success
        [failure] = failures
        assert "orbit_class" in failure and "'Apollo'" in failure and "2018-09-08" in failure, failure
        assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(len(real),)]
        assert variant_columns(warehouse, "raw_nasa") == []

        # the source is fixed: one run over the three days loads each object once per day, nothing twice
        bad_day[2]["is_potentially_hazardous_asteroid"] = False
        undeclared_day[1]["orbit_class"] = 4
        write_feed_days(feed, {date(2018, 9, 7): bad_day, date(2018, 9, 8): undeclared_day})
        summary, failures = run(instance, ["2018-09-06", "2018-09-07", "2018-09-08"])
        assert summary.ok and not failures, (summary.runs, failures)
    keys = "count(*), count(distinct (neo_reference_id, close_approach_date))"
    assert query(warehouse, f"select {keys} from raw_nasa.asteroids") == [(4 * len(real), 4 * len(real))]
    approaches = sum(len(neo["close_approach_data"]) for neo in real)
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(4 * approaches,)]
    assert variant_columns(warehouse, "raw_nasa") == []
