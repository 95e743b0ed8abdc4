"""Hacker News: the generated demo feed, the replay server, and the dlt source against real local HTTP servers into
a temp DuckDB file. Expected rows come from the recorded file or the responses a test serves."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
import requests

from extract.hackernews.replay import HackerNewsReplay, recorded_items
from extract.hackernews.source import DEFAULT_MAX_ITEMS, ITEM_COLUMNS, hackernews
from tests.fixtures_hackernews import demo_row_counts, hackernews_error
from tests.support import scripted_server

FAST_RETRY = {"backoff_factor": 0.01, "max_retry_delay": 5.0}
ITEMS = recorded_items()
FIRST_ID, LAST_ID = min(ITEMS), max(ITEMS)
DUCKDB_TYPES = {"bigint": "BIGINT", "text": "VARCHAR", "bool": "BOOLEAN", "json": "JSON"}
API_FIELDS = [name for name in ITEM_COLUMNS if not name.startswith("_")]
API_FIELDS_SQL = ", ".join(f'"{name}"' for name in API_FIELDS)  # `by` is a keyword


def load(base_url: str, tmp_path: Path, **source_args: Any) -> Path:
    """One run of the dlt source into `tmp_path`'s DuckDB file; runs in the same tmp_path share the cursor."""
    warehouse = tmp_path / "w.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="hackernews_test",
        destination=dlt.destinations.duckdb(credentials=str(warehouse)),
        dataset_name="raw_hackernews",
        pipelines_dir=str(tmp_path / "dlt"),
    )
    pipeline.run(hackernews(base_url=base_url, **FAST_RETRY, **source_args)).raise_on_failed_jobs()
    return warehouse


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def loaded_ids(warehouse: Path) -> list[int]:
    return [item_id for (item_id,) in query(warehouse, "select id from raw_hackernews.items order by id")]


# -- the generated feed and the replay server -----------------------------------------------------------------------


def test_generated_feed_has_the_api_shape_and_true_descendants() -> None:
    items = list(ITEMS.values())
    assert list(ITEMS) == list(range(FIRST_ID, LAST_ID + 1)), "consecutive ids"
    assert {item["type"] for item in items} == {"story", "comment", "job"}
    assert sum(bool(item.get("deleted")) for item in items) >= 2 and sum(bool(item.get("dead")) for item in items) >= 2
    assert all(set(item) == {"id", "type", "time", "deleted"} for item in items if item.get("deleted"))
    assert all(set(item) <= set(API_FIELDS) for item in items)
    days = {datetime.fromtimestamp(item["time"], UTC).date() for item in items}
    assert min(days).isoformat() == "2024-03-01" and len(days) == 10
    assert [item["time"] for item in items] == sorted(item["time"] for item in items), "ids grow with time"

    live = {item["id"] for item in items if not item.get("deleted") and not item.get("dead")}
    for item in items:
        if "parent" in item:
            assert ITEMS[item["parent"]]["type"] in ("story", "comment") and item["parent"] < item["id"]
            assert item["id"] in ITEMS[item["parent"]]["kids"]
    assert any(ITEMS[item["parent"]]["type"] == "comment" for item in items if "parent" in item), "replies nest"

    def live_comments_under(item_id: int) -> int:
        kids = ITEMS[item_id].get("kids", [])
        return sum((kid in live) + live_comments_under(kid) for kid in kids)

    stories = [item for item in items if item["type"] == "story" and not item.get("deleted")]
    assert all(story["descendants"] == live_comments_under(story["id"]) for story in stories)
    assert sum(story["descendants"] for story in stories) > 100


def test_replay_serves_maxitem_items_and_null_for_unknown_ids(hackernews_replay_url: str) -> None:
    assert requests.get(f"{hackernews_replay_url}/v0/maxitem.json").json() == LAST_ID
    assert requests.get(f"{hackernews_replay_url}/v0/item/{FIRST_ID}.json").json() == ITEMS[FIRST_ID]
    unknown = requests.get(f"{hackernews_replay_url}/v0/item/{LAST_ID + 1}.json")
    assert unknown.status_code == 200 and unknown.text == "null"
    assert requests.get(f"{hackernews_replay_url}/v0/topstories.json").status_code == 404

    with HackerNewsReplay(max_item=LAST_ID - 10) as server:
        assert requests.get(f"{server.base_url}/v0/maxitem.json").json() == LAST_ID - 10
        server.max_item = LAST_ID + 3  # new items arrive while the server runs
        assert requests.get(f"{server.base_url}/v0/maxitem.json").json() == LAST_ID + 3
        assert server.requested_paths == ["/v0/maxitem.json"] * 2


# -- the dlt source ------------------------------------------------------------------------------------------------


def test_a_demo_load_lands_every_item_in_the_declared_columns(hackernews_replay_url: str, tmp_path: Path) -> None:
    assert DEFAULT_MAX_ITEMS >= len(ITEMS), "one demo run loads the whole file"
    started = datetime.now(UTC)
    warehouse = load(hackernews_replay_url, tmp_path)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        expected = demo_row_counts(con)
        assert con.sql("select count(*) from raw_hackernews.items").fetchone() == (expected["raw_hackernews.items"],)
        assert expected["raw_hackernews.items"] == len(ITEMS)
        columns = dict(con.sql("select column_name, column_type from (describe raw_hackernews.items)").fetchall())
        tables = {
            name
            for (name,) in con.sql(
                "select table_name from duckdb_tables() where schema_name = 'raw_hackernews'"
            ).fetchall()
        }
        rows = con.sql(f"select {API_FIELDS_SQL} from raw_hackernews.items order by id")
        loaded = [dict(zip(API_FIELDS, row, strict=True)) for row in rows.fetchall()]
        [(loaded_at, distinct_loaded_at)] = con.sql(
            "select min(_loaded_at), count(distinct _loaded_at) from raw_hackernews.items"
        ).fetchall()

    declared = {name: DUCKDB_TYPES.get(hint["data_type"]) for name, hint in ITEM_COLUMNS.items()}
    declared["_loaded_at"] = "TIMESTAMP WITH TIME ZONE"
    assert {name: columns[name] for name in declared} == declared
    assert not [name for name in columns if "__v_" in name], "no variant columns"
    assert tables == {"items", "_dlt_loads", "_dlt_pipeline_state", "_dlt_version"}, "no child table for kids"

    # every field as the API sent it; absent fields are NULL, kids a JSON list
    for row in loaded:
        row["kids"] = json.loads(row["kids"]) if row["kids"] is not None else None
        row["parts"] = json.loads(row["parts"]) if row["parts"] is not None else None
    assert loaded == [{name: item.get(name) for name in API_FIELDS} for item in ITEMS.values()]
    assert distinct_loaded_at == 1 and started <= loaded_at <= datetime.now(UTC), "one load time per run"


def test_a_run_with_nothing_new_asks_only_for_maxitem(tmp_path: Path) -> None:
    with HackerNewsReplay() as server:
        warehouse = load(server.base_url, tmp_path, max_items=20)
        assert len(server.requested_paths) == 1 + 20
        server.clear_requests()
        load(server.base_url, tmp_path, max_items=20)
        assert server.requested_paths == ["/v0/maxitem.json"]
    assert query(warehouse, "select count(*), count(distinct id) from raw_hackernews.items") == [(20, 20)]
    assert query(warehouse, "select count(*) from raw_hackernews._dlt_loads") == [(1,)], "no empty load"


def test_when_new_items_arrive_the_next_run_fetches_only_them(tmp_path: Path) -> None:
    arrived, max_items = 7, 30
    with HackerNewsReplay(max_item=LAST_ID - arrived) as server:
        warehouse = load(server.base_url, tmp_path, max_items=max_items)
        first_loaded = LAST_ID - arrived - max_items + 1
        assert loaded_ids(warehouse) == list(range(first_loaded, LAST_ID - arrived + 1))
        server.clear_requests()

        server.max_item = LAST_ID
        load(server.base_url, tmp_path, max_items=max_items)
        assert server.requested_item_ids() == list(range(LAST_ID - arrived + 1, LAST_ID + 1))
    assert loaded_ids(warehouse) == list(range(first_loaded, LAST_ID + 1))
    assert query(warehouse, "select count(distinct _loaded_at) from raw_hackernews.items") == [(2,)]


def test_max_items_bounds_the_first_load_to_the_newest_ids(tmp_path: Path) -> None:
    with HackerNewsReplay() as server:
        warehouse = load(server.base_url, tmp_path, max_items=40)
        assert server.requested_item_ids() == list(range(LAST_ID - 39, LAST_ID + 1))
    assert loaded_ids(warehouse) == list(range(LAST_ID - 39, LAST_ID + 1))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert demo_row_counts(con, max_items=40)["raw_hackernews.items"] == 40


def test_null_items_are_skipped_and_asked_again_next_run(tmp_path: Path) -> None:
    with HackerNewsReplay(max_item=LAST_ID + 5) as server:  # the API has no items for the five newest ids yet
        warehouse = load(server.base_url, tmp_path, max_items=10)
        assert server.requested_item_ids() == list(range(LAST_ID - 4, LAST_ID + 6))
        assert loaded_ids(warehouse) == list(range(LAST_ID - 4, LAST_ID + 1))
        server.clear_requests()
        load(server.base_url, tmp_path, max_items=10)  # the cursor is the highest id loaded, not asked
        assert server.requested_item_ids() == list(range(LAST_ID + 1, LAST_ID + 6))
    assert loaded_ids(warehouse) == list(range(LAST_ID - 4, LAST_ID + 1))


def test_rate_limits_server_errors_and_timeouts_are_retried(tmp_path: Path) -> None:
    item = json.dumps({"id": 7, "type": "story", "time": 1709251200, "title": "retried", "kids": [8, 9]})
    unavailable = (503, {}, "unavailable")
    with scripted_server(
        (429, {"Retry-After": "1"}, "slow down"),  # maxitem
        (200, {}, "7", 1.0),  # answers after the client's timeout
        (200, {}, "7"),
        unavailable,  # item 7: 503 twice, then 200
        unavailable,
        (200, {}, item),
    ) as server:
        started = time.monotonic()
        warehouse = load(server.base_url, tmp_path, max_items=1, timeout=0.3)
        waited = time.monotonic() - started
        assert server.requests == 6
    assert waited >= 1.0, "Retry-After: 1 is honoured over the 0.01 s backoff"
    assert query(warehouse, "select id, title, kids from raw_hackernews.items") == [(7, "retried", "[8,9]")]


@pytest.mark.parametrize(
    ("body", "says"),
    [("<html>maintenance</html>", "not JSON: '<html>maintenance</html>'"), ("[1, 2]", "not an item object")],
)
def test_a_body_that_is_not_an_item_fails_naming_the_item_id(tmp_path: Path, body: str, says: str) -> None:
    with scripted_server((200, {}, "12"), (200, {}, body)) as server, pytest.raises(Exception) as raised:
        load(server.base_url, tmp_path, max_items=1)
    message = str(hackernews_error(raised.value))
    assert "item 12" in message and f"{server.base_url}/v0/item/12.json" in message and says in message
    assert not (tmp_path / "w.duckdb").exists() or not query(
        tmp_path / "w.duckdb",
        "select * from information_schema.tables where table_schema = 'raw_hackernews' and table_name = 'items'",
    )


# -- the Dagster slice ------------------------------------------------------------------------------------------------


def test_the_dagster_asset_loads_the_demo_then_only_what_is_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`raw_hackernews/items` materialized through Dagster on the demo replay (no ELT_HACKERNEWS_BASE_URL), twice:
    the second run asks for nothing it has, loads 0 rows and leaves the table as it was."""
    import dagster as dg
    from dagster_dlt import DagsterDltResource

    from orchestration.defs.hackernews.assets import hackernews_assets
    from orchestration.defs.hackernews.resources import HackerNewsApiResource
    from orchestration.defs.hackernews.schedules import HACKERNEWS_JOB, schedules
    from orchestration.lib.environment import resolve
    from orchestration.lib.warehouse import WarehouseResource

    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path / "data"))
    env = resolve()
    resources = {
        "dlt": DagsterDltResource(),
        "hackernews_api": HackerNewsApiResource(),
        "warehouse": WarehouseResource.from_environment(env),
    }
    runs = [dg.materialize([hackernews_assets], resources=resources) for _ in range(2)]
    [first], [second] = (run.asset_materializations_for_node("hackernews_items") for run in runs)
    with duckdb.connect(env.warehouse, read_only=True) as con:
        expected = demo_row_counts(con)["raw_hackernews.items"]
        assert con.sql("select count(*), count(distinct id) from raw_hackernews.items").fetchone() == (
            expected,
            expected,
        )
    assert first.metadata["rows_loaded"].value == expected
    assert second.metadata["rows_loaded"].value == 0
    assert first.metadata["dagster/row_count"].value == second.metadata["dagster/row_count"].value == expected

    [hourly] = schedules().schedules
    assert (hourly.job_name, hourly.cron_schedule) == (HACKERNEWS_JOB, "15 * * * *")
    assert hourly.default_status == dg.DefaultScheduleStatus.STOPPED  # dev: exists, off
