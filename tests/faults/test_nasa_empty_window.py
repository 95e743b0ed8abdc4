"""A NeoWs window without any object, on a fresh warehouse: the load succeeds with 0 rows, both raw tables exist
(the close-approach table too, which dlt would only create on its first row), and the NASA models build, empty.
The next window's objects then land in those tables, linked to their parents (dbt over loaded NeoWs days is the
end-to-end test's)."""

import json
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from extract.nasa.replay import RECORDED_DIR, ReplayServer
from orchestration.pipeline import run_pipeline
from tests.fixtures_nasa import write_feed_days
from tests.support import use_platform_env

NASA_KEY = dg.AssetKey(["raw_nasa", "asteroids"])
REAL_DAY = "2018-09-05"
NASA_TABLES = (
    "raw_nasa.asteroids",
    "raw_nasa.asteroids__close_approach_data",
    "marts.dim_asteroids",
    "marts.fct_close_approaches",
    "marts.fct_close_approaches_daily",
)


def test_a_window_without_objects_loads_zero_rows_and_the_models_build_on_a_fresh_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    neos = json.loads((RECORDED_DIR / f"feed_{REAL_DAY}.json").read_text())["near_earth_objects"][REAL_DAY]
    feed = write_feed_days(tmp_path / "feed", {date(2018, 9, 5): [], date(2018, 9, 6): neos})
    # the NeoWs asset, then every dbt model, test and check downstream of it (the other sources are not needed)
    selection = dg.AssetSelection.assets(NASA_KEY).downstream()

    with ReplayServer(feed) as server, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, tmp_path / "data", ELT_NASA_BASE_URL=server.base_url)
        empty = run_pipeline(
            instance=instance, selection=selection, partitions={NASA_KEY.to_user_string(): ["2018-09-05"]}
        )
        assert empty.ok, (empty.runs, empty.failed_steps, empty.checks_failed)
        assert empty.checks_passed > 0, "dbt's tests ran"
        assert {table: rows for table, rows in empty.table_rows if table in NASA_TABLES} == dict.fromkeys(
            NASA_TABLES, 0
        )
        [materialization] = [
            event.asset_materialization
            for event in instance.get_event_records(
                dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION, asset_key=NASA_KEY)
            )
        ]
        assert materialization.partition == "2018-09-05"
        assert materialization.metadata["rows_loaded"].value == materialization.metadata["dagster/row_count"].value

        # the next day's objects land in the tables the empty window created (the NeoWs asset alone)
        loaded = run_pipeline(
            instance=instance,
            selection=dg.AssetSelection.assets(NASA_KEY).without_checks(),
            partitions={NASA_KEY.to_user_string(): ["2018-09-06"]},
        )
        assert loaded.ok, (loaded.runs, loaded.failed_steps, loaded.checks_failed)
    approaches = [approach for neo in neos for approach in neo["close_approach_data"]]
    rows = dict(loaded.table_rows)
    assert rows["raw_nasa.asteroids"] == len(neos)
    assert rows["raw_nasa.asteroids__close_approach_data"] == len(approaches)
    with duckdb.connect(loaded.warehouse, read_only=True) as con:
        orphans = con.sql(
            """
            select count(*) from raw_nasa.asteroids__close_approach_data c
            left join raw_nasa.asteroids a on a._dlt_id = c._dlt_parent_id where a._dlt_id is null
            """
        ).fetchone()
    assert orphans == (0,)
