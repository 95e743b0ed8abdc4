"""NASA NeoWs: the replay server, the dlt source against real local HTTP servers, and the Dagster asset."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import dlt
import duckdb
import pytest
import requests
from dagster_dlt import DagsterDltResource

from extract.nasa.replay import RECORDED_DIR, ReplayServer, recorded_days
from extract.nasa.source import NeowsError, feed_windows, neows
from orchestration.lib.warehouse import WarehouseResource
from orchestration.nasa import NasaApiResource, nasa_assets

DEMO_START, DEMO_END = date(2018, 9, 5), date(2018, 9, 11)
SECRET_KEY = "s3cret-test-key"
FAST_RETRY = {"backoff_factor": 0.01, "max_retry_delay": 5.0}


def recorded_counts() -> tuple[int, int]:
    """(objects, close approaches) in the recorded files: what a demo load must land."""
    objects = approaches = 0
    for day, path in recorded_days(RECORDED_DIR).items():
        for neo in json.loads(path.read_text())["near_earth_objects"][day]:
            objects += 1
            approaches += len(neo["close_approach_data"])
    return objects, approaches


def load(base_url: str, tmp_path: Path, start: date = DEMO_START, end: date = DEMO_END) -> Path:
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


def neows_error(error: BaseException) -> NeowsError:
    """The NeowsError under dlt's wrapping exceptions."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, NeowsError):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None, f"no NeowsError in {error!r}"
    return seen


@contextmanager
def scripted_server(*responses: tuple[int, dict[str, str], str]) -> Iterator[str]:
    """A tiny HTTP server answering each GET with the next (status, headers, body); the last one repeats."""
    queue = list(responses)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_replay_answers_a_seven_day_window_and_rejects_eight(nasa_replay_url: str) -> None:
    feed = f"{nasa_replay_url}/neo/rest/v1/feed"
    week = requests.get(feed, params={"start_date": "2018-09-05", "end_date": "2018-09-11", "api_key": "DEMO_KEY"})
    assert week.status_code == 200
    body = week.json()
    assert sorted(body["near_earth_objects"]) == [str(DEMO_START + timedelta(days=n)) for n in range(7)]
    assert body["element_count"] == recorded_counts()[0] == sum(map(len, body["near_earth_objects"].values()))
    assert set(body["links"]) == {"next", "prev", "self"}

    eight = requests.get(feed, params={"start_date": "2018-09-05", "end_date": "2018-09-12", "api_key": "DEMO_KEY"})
    assert eight.status_code == 400 and "7 Days" in eight.json()["error_message"]
    malformed = requests.get(feed, params={"start_date": "2018-9-5", "end_date": "2018-09-06", "api_key": "x"})
    assert malformed.status_code == 400
    missing = requests.get(feed, params={"start_date": "2018-09-04", "end_date": "2018-09-05", "api_key": "x"})
    assert missing.status_code == 404 and "2018-09-04" in missing.json()["error_message"]


def test_source_requests_windows_of_at_most_seven_days(tmp_path: Path) -> None:
    assert feed_windows(date(2018, 9, 1), date(2018, 9, 15)) == [
        (date(2018, 9, 1), date(2018, 9, 7)),
        (date(2018, 9, 8), date(2018, 9, 14)),
        (date(2018, 9, 15), date(2018, 9, 15)),
    ]
    days = [date(2018, 10, 1) + timedelta(days=n) for n in range(9)]
    for day in days:  # nine recorded days with one made-up object each
        neo = {"neo_reference_id": f"9{day:%m%d}", "name": f"(test {day})", "close_approach_data": []}
        feed = {"element_count": 1, "near_earth_objects": {str(day): [neo]}}
        (tmp_path / f"feed_{day}.generated.json").write_text(json.dumps(feed))
    with ReplayServer(tmp_path) as server:
        rows = list(neows(days[0], days[-1], "DEMO_KEY", base_url=server.base_url))
        assert server.requested_windows == [(days[0], days[6]), (days[7], days[8])]
    assert [row["close_approach_date"] for row in rows] == [str(day) for day in days]


def test_source_loads_the_demo_window(nasa_replay_url: str, tmp_path: Path) -> None:
    warehouse = load(nasa_replay_url, tmp_path)
    objects, approaches = recorded_counts()
    assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(objects,)]
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(approaches,)]
    # the real 2018-09-05 day, as the API sent it: numbers in close approaches stay strings for dbt to cast
    assert query(
        warehouse,
        """
        select a.name, a.is_potentially_hazardous_asteroid, c.miss_distance__kilometers, c.close_approach_date
        from raw_nasa.asteroids a
        join raw_nasa.asteroids__close_approach_data c on c._dlt_parent_id = a._dlt_id
        where a.neo_reference_id = '3158122' and a.close_approach_date = date '2018-09-05'
        """,
    ) == [("(2003 QB30)", False, "16315955", "2018-09-05")]
    assert query(warehouse, "select count(*) from raw_nasa.asteroids where is_potentially_hazardous_asteroid")[0][0]
    recurring = "select count(*) from (select neo_reference_id from raw_nasa.asteroids group by 1 having count(*) > 1)"
    assert query(warehouse, recurring)[0][0] > 0


def test_reloading_the_same_or_an_overlapping_window_adds_no_duplicates(nasa_replay_url: str, tmp_path: Path) -> None:
    load(nasa_replay_url, tmp_path)
    load(nasa_replay_url, tmp_path)
    warehouse = load(nasa_replay_url, tmp_path, date(2018, 9, 8), date(2018, 9, 11))
    objects, approaches = recorded_counts()
    keys = "select count(distinct (neo_reference_id, close_approach_date)), count(*) from raw_nasa.asteroids"
    assert query(warehouse, keys) == [(objects, objects)]
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(approaches,)]
    orphans = """
        select count(*) from raw_nasa.asteroids__close_approach_data c
        left join raw_nasa.asteroids a on a._dlt_id = c._dlt_parent_id where a._dlt_id is null
    """
    assert query(warehouse, orphans) == [(0,)]


def test_a_refused_key_fails_fast_naming_nasa_api_key() -> None:
    refused = (403, {"Content-Type": "application/json"}, '{"error": {"code": "API_KEY_INVALID"}}')
    with scripted_server(refused) as base_url, pytest.raises(Exception) as raised:
        list(neows(DEMO_START, DEMO_START, SECRET_KEY, base_url=base_url, **FAST_RETRY))
    message = str(neows_error(raised.value))
    assert "NASA_API_KEY" in message and "403" in message
    assert SECRET_KEY not in str(raised.value) and SECRET_KEY not in message


def test_rate_limited_requests_are_retried_after_the_servers_delay() -> None:
    day = "2018-09-05"
    ok = json.dumps({"element_count": 1, "near_earth_objects": {day: [{"neo_reference_id": "1", "name": "x"}]}})
    with scripted_server((429, {"Retry-After": "1"}, "slow down"), (200, {}, ok)) as base_url:
        started = time.monotonic()
        rows = list(neows(DEMO_START, DEMO_START, "DEMO_KEY", base_url=base_url, **FAST_RETRY))
        waited = time.monotonic() - started
    assert [row["neo_reference_id"] for row in rows] == ["1"]
    assert waited >= 0.9, "Retry-After: 1 should be honoured over the 0.01 s backoff"


def test_a_malformed_body_names_the_window() -> None:
    body = f"<html>maintenance, see /feed?api_key={SECRET_KEY}</html>"
    with (
        scripted_server((200, {"Content-Type": "text/html"}, body)) as base_url,
        pytest.raises(Exception) as raised,
    ):
        list(neows(DEMO_START, date(2018, 9, 6), SECRET_KEY, base_url=base_url, **FAST_RETRY))
    message = str(neows_error(raised.value))
    assert "2018-09-05..2018-09-06" in message and "<html>maintenance" in message
    assert SECRET_KEY not in message


def test_dagster_materializes_raw_nasa_asteroids(nasa_replay_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    result = dg.materialize(
        [nasa_assets],
        resources={
            "dlt": DagsterDltResource(),
            "nasa_api": NasaApiResource(base_url=nasa_replay_url),
            "warehouse": WarehouseResource(env_name="dev", location=str(warehouse), data_dir=str(tmp_path)),
        },
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("nasa_neows")
    assert materialization.asset_key == dg.AssetKey(["raw_nasa", "asteroids"])
    assert materialization.metadata["window"].value == "2018-09-05..2018-09-11"
    objects, approaches = recorded_counts()
    assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(objects,)]
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(approaches,)]


def test_without_key_or_url_the_resource_replays_the_recorded_days() -> None:
    with NasaApiResource().endpoint() as endpoint:
        assert endpoint.replayed and endpoint.api_key == "DEMO_KEY"
        params = {"start_date": "2018-09-05", "end_date": "2018-09-05", "api_key": endpoint.api_key}
        feed = requests.get(f"{endpoint.base_url}/neo/rest/v1/feed", params=params).json()
        assert feed["element_count"] == 4  # the real recorded day
    with NasaApiResource(api_key=SECRET_KEY).endpoint() as endpoint:
        assert endpoint.base_url == "https://api.nasa.gov" and not endpoint.replayed
