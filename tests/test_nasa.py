"""NASA NeoWs: the replay server, the dlt source against real local HTTP servers, and the partitioned Dagster asset,
its job and schedule. Expected rows and values come from the recorded files or the responses a test serves."""

import copy
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import dlt
import duckdb
import pytest
import requests
from dagster_dlt import DagsterDltResource

from extract.nasa.replay import RECORDED_DIR, ReplayServer, recorded_days
from extract.nasa.source import feed_windows, neows, typed_value
from orchestration.defs.nasa.assets import assets, build_nasa_assets
from orchestration.defs.nasa.partitions import (
    DEMO_END,
    DEMO_START,
    DEV_WINDOW_DAYS,
    daily_partitions,
    run_window,
    start_date,
)
from orchestration.defs.nasa.resources import NasaApiResource
from orchestration.defs.nasa.schedules import schedules
from orchestration.lib.environment import resolve
from orchestration.lib.warehouse import WarehouseResource
from tests.fixtures_nasa import neows_error, write_feed_days
from tests.support import scripted_server

SECRET_KEY = "s3cret-test-key"
FAST_RETRY = {"backoff_factor": 0.01, "max_retry_delay": 5.0}
NASA_ASSETS = build_nasa_assets(DEMO_START)
REAL_DAY = "2018-09-05"  # the one real recorded response


def recorded_neos() -> list[dict]:
    return [
        neo
        for day, path in recorded_days(RECORDED_DIR).items()
        for neo in json.loads(path.read_text())["near_earth_objects"][day]
    ]


def recorded_counts() -> tuple[int, int]:
    """(objects, close approaches) in the recorded files: what a demo load must land."""
    neos = recorded_neos()
    return len(neos), sum(len(neo["close_approach_data"]) for neo in neos)


def load(base_url: str, tmp_path: Path, start: date, end: date) -> Path:
    """The dlt source alone, into a DuckDB file, as a test of the extractor without Dagster."""
    warehouse = tmp_path / "w.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="nasa_test",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw_nasa",
        pipelines_dir=str(tmp_path / "dlt"),
    )
    pipeline.run(neows(start, end, "DEMO_KEY", base_url=base_url, **FAST_RETRY)).raise_on_failed_jobs()
    return warehouse


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def materialize(
    tmp_path: Path,
    nasa_api: NasaApiResource,
    first: str | None,
    last: str | None,
    env_name: str = "dev",
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the NeoWs asset over the partition range [first, last] in one run, as a backfill does."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else {}
    return dg.materialize(
        [NASA_ASSETS],
        resources={
            "dlt": DagsterDltResource(),
            "nasa_api": nasa_api,
            "warehouse": WarehouseResource(
                env_name=env_name, location=str(tmp_path / "w.duckdb"), data_dir=str(tmp_path)
            ),
        },
        tags=tags,
        run_config=run_config,
        raise_on_error=False,
    )


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [event for event in result.all_events if event.is_step_failure]
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


# -- the replay server and the extractor ----------------------------------------------------------------------------


def test_replay_answers_a_seven_day_window_and_rejects_eight(nasa_replay_url: str) -> None:
    feed = f"{nasa_replay_url}/neo/rest/v1/feed"
    week = requests.get(feed, params={"start_date": DEMO_START, "end_date": DEMO_END, "api_key": "DEMO_KEY"})
    assert week.status_code == 200
    body = week.json()
    assert sorted(body["near_earth_objects"]) == list(recorded_days(RECORDED_DIR))
    assert body["element_count"] == recorded_counts()[0] == sum(map(len, body["near_earth_objects"].values()))
    assert set(body["links"]) == {"next", "prev", "self"}

    eight = requests.get(feed, params={"start_date": "2018-09-05", "end_date": "2018-09-12", "api_key": "DEMO_KEY"})
    assert eight.status_code == 400 and "7 Days" in eight.json()["error_message"]
    malformed = requests.get(feed, params={"start_date": "2018-9-5", "end_date": "2018-09-06", "api_key": "x"})
    assert malformed.status_code == 400
    missing = requests.get(feed, params={"start_date": "2018-09-04", "end_date": "2018-09-05", "api_key": "x"})
    assert missing.status_code == 404 and "2018-09-04" in missing.json()["error_message"]


def test_source_requests_windows_of_at_most_seven_days() -> None:
    first = date(2018, 9, 1)
    windows = feed_windows(first, first + timedelta(days=14))
    assert [(last - start).days + 1 for start, last in windows] == [7, 7, 1]
    assert all(b[0] - a[1] == timedelta(days=1) for a, b in zip(windows, windows[1:], strict=False))
    assert windows[0][0] == first and windows[-1][1] == first + timedelta(days=14)


def test_the_whole_object_lands_diameters_velocities_and_miss_distances(nasa_replay_url: str, tmp_path: Path) -> None:
    warehouse = load(nasa_replay_url, tmp_path, date.fromisoformat(DEMO_START), date.fromisoformat(DEMO_END))
    objects, approaches = recorded_counts()
    assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(objects,)]
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(approaches,)]

    neo = json.loads((RECORDED_DIR / f"feed_{REAL_DAY}.json").read_text())["near_earth_objects"][REAL_DAY][0]
    diameters = {
        f"estimated_diameter__{unit}__{bound}": value
        for unit, bounds in neo["estimated_diameter"].items()
        for bound, value in bounds.items()
    }
    [approach] = neo["close_approach_data"]
    measures = {
        **{f"relative_velocity__{unit}": value for unit, value in approach["relative_velocity"].items()},
        **{f"miss_distance__{unit}": value for unit, value in approach["miss_distance"].items()},
    }
    assert len(diameters) == 8 and len(measures) == 7
    [row] = query(
        warehouse,
        f"""
        select a.name, a.absolute_magnitude_h, a.is_potentially_hazardous_asteroid, {", ".join(diameters)},
            c.close_approach_date, c.epoch_date_close_approach, c.orbiting_body, {", ".join(measures)}
        from raw_nasa.asteroids a
        join raw_nasa.asteroids__close_approach_data c on c._dlt_parent_id = a._dlt_id
        where a.neo_reference_id = '{neo["neo_reference_id"]}' and a.close_approach_date = date '{REAL_DAY}'
        """,
    )
    assert row == (
        neo["name"],
        neo["absolute_magnitude_h"],
        neo["is_potentially_hazardous_asteroid"],
        *diameters.values(),
        approach["close_approach_date"],
        approach["epoch_date_close_approach"],
        approach["orbiting_body"],
        *measures.values(),  # strings, as the API sends them: dbt casts
    )


def test_an_older_response_with_missing_fields_loads_beside_a_newer_one(tmp_path: Path) -> None:
    real = json.loads((RECORDED_DIR / f"feed_{REAL_DAY}.json").read_text())["near_earth_objects"][REAL_DAY]
    older, newer = copy.deepcopy(real), copy.deepcopy(real)
    for neo in older:  # the real older shape, with a whole-number magnitude (`27`, not `27.0`)
        neo["absolute_magnitude_h"] = round(neo["absolute_magnitude_h"])
    for neo in newer:  # today's shape: id, sentry flags and the approach's full date
        reference = neo["neo_reference_id"]
        neo.update(id=reference, is_sentry_object=True)
        neo["sentry_data"] = f"http://api.nasa.gov/neo/rest/v1/neo/sentry/{reference}?api_key={SECRET_KEY}"
        neo["close_approach_data"][0]["close_approach_date_full"] = "2018-Sep-06 07:04"
    older_day, newer_day = date(2018, 9, 5), date(2018, 9, 6)
    write_feed_days(tmp_path / "feed", {older_day: older, newer_day: newer})
    columns_sql = "select column_name from (describe raw_nasa.asteroids)"
    with ReplayServer(tmp_path / "feed") as server:
        warehouse = load(server.base_url, tmp_path, older_day, older_day)
        # the newer fields exist from the first load, so dbt models over them compile on older data too
        assert {"id", "is_sentry_object", "sentry_data"} <= {name for (name,) in query(warehouse, columns_sql)}
        load(server.base_url, tmp_path, newer_day, newer_day)

    assert not [name for (name,) in query(warehouse, columns_sql) if "__v_" in name], "no variant columns"
    rows = query(
        warehouse,
        f"""
        select a.close_approach_date, a.id, a.is_sentry_object, a.sentry_data, a.absolute_magnitude_h,
            c.close_approach_date_full
        from raw_nasa.asteroids a join raw_nasa.asteroids__close_approach_data c on c._dlt_parent_id = a._dlt_id
        where a.neo_reference_id = '{real[0]["neo_reference_id"]}' order by 1
        """,
    )
    reference = real[0]["neo_reference_id"]
    assert rows == [
        (older_day, None, None, None, older[0]["absolute_magnitude_h"], None),
        (
            newer_day,
            reference,
            True,
            f"http://api.nasa.gov/neo/rest/v1/neo/sentry/{reference}",  # the api key is not stored
            newer[0]["absolute_magnitude_h"],
            "2018-Sep-06 07:04",
        ),
    ]


def test_a_refused_key_fails_fast_naming_nasa_api_key(tmp_path: Path) -> None:
    refused = (403, {"Content-Type": "application/json"}, '{"error": {"code": "API_KEY_INVALID"}}')
    with scripted_server(refused) as server, pytest.raises(Exception) as raised:
        list(neows(date(2018, 9, 5), date(2018, 9, 5), SECRET_KEY, base_url=server.base_url, **FAST_RETRY))
    message = str(neows_error(raised.value))
    assert "NASA_API_KEY" in message and "403" in message
    assert server.requests == 1, "a refused key is not retried"
    assert SECRET_KEY not in str(raised.value) and SECRET_KEY not in message

    # through Dagster: the run fails with that message, and the key is in no event of the run
    with scripted_server(refused) as server:
        nasa_api = NasaApiResource(api_key=SECRET_KEY, base_url=server.base_url)
        result = materialize(tmp_path, nasa_api, "2018-09-05", "2018-09-05")
    assert not result.success and "NASA_API_KEY" in failure_description(result)
    assert not [event for event in result.all_events if SECRET_KEY in repr(event)]


def test_rate_limits_server_errors_and_timeouts_are_retried() -> None:
    day = "2018-09-05"
    ok = json.dumps({"element_count": 1, "near_earth_objects": {day: [{"neo_reference_id": "1", "name": "x"}]}})
    with scripted_server(
        (429, {"Retry-After": "1"}, "slow down"),
        (503, {}, "unavailable"),
        (200, {}, ok, 1.0),  # answers after the client's timeout
        (200, {}, ok),
    ) as server:
        started = time.monotonic()
        rows = list(
            neows(date(2018, 9, 5), date(2018, 9, 5), "DEMO_KEY", base_url=server.base_url, timeout=0.3, **FAST_RETRY)
        )
        waited = time.monotonic() - started
    assert [row["neo_reference_id"] for row in rows] == ["1"]
    assert server.requests == 4
    assert waited >= 1.0, "Retry-After: 1 is honoured over the 0.01 s backoff"


def test_a_malformed_body_names_the_window_and_shows_a_sample(tmp_path: Path) -> None:
    body = f"<html>maintenance, see /feed?api_key={SECRET_KEY}</html>"
    with scripted_server((200, {"Content-Type": "text/html"}, body)) as server, pytest.raises(Exception) as raised:
        list(neows(date(2018, 9, 5), date(2018, 9, 6), SECRET_KEY, base_url=server.base_url, **FAST_RETRY))
    message = str(neows_error(raised.value))
    assert "2018-09-05..2018-09-06" in message and "<html>maintenance" in message
    assert SECRET_KEY not in message

    # through Dagster: the partition fails with its day, what arrived, and no api key
    keyless = json.dumps({"near_earth_objects": {"2018-09-07": [{"name": "(2018 RX)"}]}})
    with scripted_server((200, {}, keyless)) as server:
        result = materialize(tmp_path, NasaApiResource(base_url=server.base_url), "2018-09-07", "2018-09-07")
    assert not result.success
    description = failure_description(result)
    assert "2018-09-07..2018-09-07" in description and "has no neo_reference_id" in description
    assert "(2018 RX)" in description


def test_a_day_without_objects_succeeds_on_a_fresh_warehouse(tmp_path: Path) -> None:
    empty_day = json.dumps({"element_count": 0, "near_earth_objects": {"2018-09-07": []}})
    with scripted_server((200, {}, empty_day)) as server:
        result = materialize(tmp_path, NasaApiResource(base_url=server.base_url), "2018-09-07", "2018-09-07")
    assert result.success
    [materialization] = result.asset_materializations_for_node("nasa_neows")
    assert materialization.metadata["rows_loaded"].value == materialization.metadata["dagster/row_count"].value == 0
    # both tables exist, empty, so the dbt models over them build (tests/faults/test_nasa_empty_window.py runs dbt)
    for table in ("asteroids", "asteroids__close_approach_data"):
        assert query(tmp_path / "w.duckdb", f"select count(*) from raw_nasa.{table}") == [(0,)]
    columns = {
        name
        for (name,) in query(
            tmp_path / "w.duckdb", "select column_name from (describe raw_nasa.asteroids__close_approach_data)"
        )
    }
    assert {"_dlt_parent_id", "_dlt_list_idx", "_dlt_id", "miss_distance__lunar"} <= columns


@pytest.mark.parametrize(
    ("data_type", "sent", "lands"),
    [
        ("bool", True, True),
        ("bool", "true", True),
        ("bool", " FALSE ", False),
        ("bool", "1", True),
        ("bool", 0, False),
        ("bool", 1.0, True),
        ("double", 27, 27.0),
        ("double", "26.8", 26.8),
        ("double", "1e3", 1000.0),
        ("bigint", "1536130800000", 1536130800000),
        ("bigint", 27.0, 27),
        ("text", 3542519, "3542519"),
        ("text", None, None),
    ],
)
def test_typed_value_converts_the_documented_spellings(data_type: str, sent: object, lands: object) -> None:
    assert typed_value(data_type, sent) == lands and type(typed_value(data_type, sent)) is type(lands)


@pytest.mark.parametrize(
    ("data_type", "sent"),
    [
        ("bool", "yes"),
        ("bool", "t"),
        ("bool", 2),
        ("bool", ""),
        ("bool", "maybe"),
        ("double", "abc"),
        ("double", "nan"),
        ("double", True),
        ("bigint", "12.5"),
        ("bigint", 12.5),
        ("text", True),
        ("text", {"a": 1}),
    ],
)
def test_typed_value_refuses_every_other_value(data_type: str, sent: object) -> None:
    with pytest.raises(ValueError):
        typed_value(data_type, sent)


# -- Dagster: partitions, backfills, metadata, schedule --------------------------------------------------------------


def test_demo_days_materialize_as_a_partition_range_and_reruns_never_duplicate(tmp_path: Path) -> None:
    objects, approaches = recorded_counts()
    unpartitioned = materialize(tmp_path, NasaApiResource(), None, None)
    assert not unpartitioned.success and "partitioned by feed day" in failure_description(unpartitioned)

    first = materialize(tmp_path, NasaApiResource(), DEMO_START, DEMO_END)  # no key, no url: the bundled replay
    assert first.success
    materializations = first.asset_materializations_for_node("nasa_neows")
    assert sorted(m.partition for m in materializations) == list(recorded_days(RECORDED_DIR))
    metadata = materializations[0].metadata
    assert materializations[0].asset_key == dg.AssetKey(["raw_nasa", "asteroids"])
    assert metadata["dagster/table_name"].value == "raw_nasa.asteroids"
    assert metadata["dagster/row_count"].value == objects
    assert metadata["rows_loaded"].value == objects
    assert metadata["close_approach_rows_loaded"].value == approaches
    assert metadata["window"].value == f"{DEMO_START}..{DEMO_END}"
    assert metadata["api_requests"].value == 1
    assert metadata["source"].value == "recorded demo replay"
    columns = {column.name for column in metadata["dagster/column_schema"].value.columns}
    assert {"neo_reference_id", "close_approach_date", "estimated_diameter__meters__estimated_diameter_max"} <= columns

    # the same days again, then an overlapping range: the table keeps one row per object and day
    overlap_start = (date.fromisoformat(DEMO_END) - timedelta(days=2)).isoformat()
    for start in (DEMO_START, overlap_start):
        rerun = materialize(tmp_path, NasaApiResource(), start, DEMO_END)
        assert rerun.success
        assert rerun.asset_materializations_for_node("nasa_neows")[0].metadata["dagster/row_count"].value == objects
    warehouse = tmp_path / "w.duckdb"
    keys = "select count(distinct (neo_reference_id, close_approach_date)), count(*) from raw_nasa.asteroids"
    assert query(warehouse, keys) == [(objects, objects)]
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(approaches,)]
    orphans = """
        select count(*) from raw_nasa.asteroids__close_approach_data c
        left join raw_nasa.asteroids a on a._dlt_id = c._dlt_parent_id where a._dlt_id is null
    """
    assert query(warehouse, orphans) == [(0,)]


def test_dev_refuses_a_long_backfill_unless_asked_then_groups_seven_days_per_request(tmp_path: Path) -> None:
    days = [date(2018, 10, 1) + timedelta(days=n) for n in range(10)]
    neos = recorded_neos()
    by_day = {day: [dict(neo, neo_reference_id=f"{day:%m%d}{n}") for n, neo in enumerate(neos[:3])] for day in days}
    write_feed_days(tmp_path / "feed", by_day)
    first, last = str(days[0]), str(days[-1])
    with ReplayServer(tmp_path / "feed") as server:
        nasa_api = NasaApiResource(base_url=server.base_url)  # a real endpoint as far as the asset knows
        refused = materialize(tmp_path, nasa_api, first, last)
        assert not refused.success
        assert server.requested_windows == [], "the dev window is checked before any request"
        message = failure_description(refused)
        assert f"at most {DEV_WINDOW_DAYS}" in message and f"asks for {len(days)}" in message
        assert "ignore_date_limits: true" in message

        asked = materialize(
            tmp_path,
            nasa_api,
            first,
            last,
            run_config={"ops": {"nasa_neows": {"config": {"ignore_date_limits": True}}}},
        )
        assert asked.success
        assert server.requested_windows == [(days[0], days[6]), (days[7], days[9])]
        in_prod = materialize(tmp_path / "prod", nasa_api, first, last, env_name="prod")
        assert in_prod.success, "prod has no dev window"
    rows = sum(map(len, by_day.values()))
    assert query(tmp_path / "w.duckdb", "select count(*) from raw_nasa.asteroids") == [(rows,)]
    [materialization, *_] = asked.asset_materializations_for_node("nasa_neows")
    assert materialization.metadata["api_requests"].value == 2 and materialization.metadata["days"].value == 10


def test_schedule_loads_yesterday_at_six_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def schedule(env_name: str) -> dg.ScheduleDefinition:
        environ = {"ELT_DATA_DIR": str(tmp_path), "ELT_ENV": env_name, "ELT_PROD_DATABASE": str(tmp_path / "p.db")}
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        slice_defs = dg.Definitions.merge(assets(), schedules())
        resources = {
            "dlt": DagsterDltResource(),
            "nasa_api": NasaApiResource(),
            "warehouse": WarehouseResource(
                env_name=env_name, location=str(tmp_path / "w.duckdb"), data_dir=str(tmp_path)
            ),
        }
        return dg.Definitions.merge(slice_defs, dg.Definitions(resources=resources)).get_schedule_def(
            "nasa_daily_schedule"
        )

    dev = schedule("dev")
    assert (dev.cron_schedule, dev.execution_timezone) == ("0 6 * * *", "UTC")
    assert dev.job_name == "nasa_daily"
    assert dev.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule("prod").default_status == dg.DefaultScheduleStatus.RUNNING
    tick = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)
    [request] = dev.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick)).run_requests
    assert request.partition_key == (tick.date() - timedelta(days=1)).isoformat()


def test_partitions_start_at_the_setting_and_run_window_follows_the_environment(tmp_path: Path) -> None:
    assert daily_partitions(start_date({})).get_first_partition_key() == DEMO_START
    later = daily_partitions(start_date({"ELT_NASA_START_DATE": "2024-01-15"}))
    assert later.get_first_partition_key() == "2024-01-15"
    with pytest.raises(Exception, match="ELT_NASA_START_DATE"):
        start_date({"ELT_NASA_START_DATE": "15/01/2024"})

    today = date(2024, 3, 1)
    yesterday = (today - timedelta(days=1)).isoformat()
    dev = resolve({"ELT_DATA_DIR": str(tmp_path)})
    prod = resolve({"ELT_DATA_DIR": str(tmp_path), "ELT_ENV": "prod", "ELT_PROD_DATABASE": str(tmp_path / "p.db")})
    assert run_window(NasaApiResource(), dev, today) == (DEMO_START, DEMO_END)
    dev_first = (today - timedelta(days=DEV_WINDOW_DAYS)).isoformat()
    assert run_window(NasaApiResource(api_key=SECRET_KEY), dev, today) == (dev_first, yesterday)
    assert run_window(NasaApiResource(api_key=SECRET_KEY), prod, today) == (yesterday, yesterday)


def test_without_key_or_url_the_resource_replays_the_recorded_days() -> None:
    with NasaApiResource().endpoint() as endpoint:
        assert endpoint.replayed and endpoint.api_key == "DEMO_KEY"
        params = {"start_date": REAL_DAY, "end_date": REAL_DAY, "api_key": endpoint.api_key}
        feed = requests.get(f"{endpoint.base_url}/neo/rest/v1/feed", params=params).json()
        real = json.loads((RECORDED_DIR / f"feed_{REAL_DAY}.json").read_text())
        assert feed["element_count"] == real["element_count"]
    with NasaApiResource(api_key=SECRET_KEY).endpoint() as endpoint:
        assert endpoint.base_url == "https://api.nasa.gov" and not endpoint.replayed
    with NasaApiResource(base_url="https://user:pw@proxy.example/nasa").endpoint() as endpoint:
        assert endpoint.label == "https://proxy.example/nasa", "credentials in a url never reach logs"
