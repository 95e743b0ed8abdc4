"""Type drift at ingestion: a field whose JSON type changes between responses (NeoWs, Hacker News) or a column
retyped in the shop PostgreSQL (Sling). Each case runs the real pipeline (`run_pipeline`, Dagster in process) against
a real server on 127.0.0.1 serving the drifted data, and checks three things: the known spellings are converted
explicitly, any other value fails the run naming the column, the value and the day (or table), and nothing partial
lands: the raw tables keep their rows, and a re-run after the source is fixed loads every row exactly once."""

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest

from extract.hackernews.replay import HackerNewsReplay, recorded_items
from extract.nasa.replay import RECORDED_DIR, ReplayServer
from orchestration.pipeline import RunSummary, run_pipeline
from tests.fixtures_nasa import write_feed_days
from tests.fixtures_shop import SMALL_SHOP
from tests.support import use_platform_env

# the extract assets alone: dbt's source tests on them are checks too, run by the dbt op, so leave checks out
NASA_ASSET = dg.AssetSelection.assets(dg.AssetKey(["raw_nasa", "asteroids"])).without_checks()
HACKERNEWS_ASSET = dg.AssetSelection.assets(dg.AssetKey(["raw_hackernews", "items"])).without_checks()
SHOP_ASSETS = dg.AssetSelection.groups("shop").without_checks()
REAL_DAY = "2018-09-05"


def run(
    instance: dg.DagsterInstance, selection: dg.AssetSelection, partitions: list[str] | None = None
) -> tuple[RunSummary, list[str]]:
    """One pass of the pipeline over `selection` (no dbt), and the failure descriptions of its failed steps."""
    before = {record.run_id for record in instance.get_runs()}
    summary = run_pipeline(
        instance=instance,
        selection=selection,
        partitions={"raw_nasa/asteroids": partitions} if partitions else None,
        log_level="WARNING",
    )
    failures = []
    for dagster_run in instance.get_runs():
        if dagster_run.run_id in before:
            continue
        for record in instance.all_logs(dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            data = record.dagster_event.step_failure_data
            failures.append(data.user_failure_data.description if data.user_failure_data else data.error.message)
    return summary, failures


def query(warehouse: str, sql: str) -> list[tuple]:
    with duckdb.connect(warehouse, read_only=True) as con:
        return con.execute(sql).fetchall()


def variant_columns(warehouse: str, schema: str) -> list[str]:
    return [
        f"{table}.{column}"
        for table, column in query(
            warehouse,
            f"select table_name, column_name from information_schema.columns where table_schema = '{schema}'",
        )
        if "__v_" in column
    ]


# -- NASA NeoWs ------------------------------------------------------------------------------------------------------


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
        summary, failures = run(instance, NASA_ASSET, ["2018-09-05"])
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
        summary, failures = run(instance, NASA_ASSET, ["2018-09-06", "2018-09-07"])
        assert not summary.success
        [failure] = failures
        assert "is_potentially_hazardous_asteroid" in failure and "'maybe'" in failure, failure
        assert "feed day 2018-09-07" in failure and real[2]["neo_reference_id"] in failure, failure
        assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(len(real),)]

        # a field nobody declared changes type: dlt's contract refuses the variant column, the package is dropped
        summary, failures = run(instance, NASA_ASSET, ["2018-09-08"])
        assert not summary.success
        [failure] = failures
        assert "orbit_class" in failure and "'Apollo'" in failure and "2018-09-08" in failure, failure
        assert query(warehouse, "select count(*) from raw_nasa.asteroids") == [(len(real),)]
        assert variant_columns(warehouse, "raw_nasa") == []

        # the source is fixed: one run over the three days loads each object once per day, nothing twice
        bad_day[2]["is_potentially_hazardous_asteroid"] = False
        undeclared_day[1]["orbit_class"] = 4
        write_feed_days(feed, {date(2018, 9, 7): bad_day, date(2018, 9, 8): undeclared_day})
        summary, failures = run(instance, NASA_ASSET, ["2018-09-06", "2018-09-07", "2018-09-08"])
        assert summary.ok and not failures, (summary.runs, failures)
    keys = "count(*), count(distinct (neo_reference_id, close_approach_date))"
    assert query(warehouse, f"select {keys} from raw_nasa.asteroids") == [(4 * len(real), 4 * len(real))]
    approaches = sum(len(neo["close_approach_data"]) for neo in real)
    assert query(warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data") == [(4 * approaches,)]
    assert variant_columns(warehouse, "raw_nasa") == []


# -- Hacker News -----------------------------------------------------------------------------------------------------


def test_hackernews_converts_the_known_spellings_and_fails_naming_item_column_value_and_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = list(recorded_items().values())[:30]
    ids = [item["id"] for item in items]
    stories = [item for item in items if item["type"] == "story" and "score" in item]
    comments = [item for item in items if item["type"] == "comment" and not item.get("deleted")]
    assert stories and len(comments) >= 2
    spelled = {stories[0]["id"]: {"score": str(stories[0]["score"])}, comments[0]["id"]: {"dead": "false"}}
    spelled[comments[1]["id"]] = {"deleted": 0, "parent": float(comments[1]["parent"])}
    for item in items:
        item.update(spelled.get(item["id"], {}))
    recorded = tmp_path / "items.json"
    recorded.write_text(json.dumps(items))
    first_run, bad = ids[19], next(item for item in items[20:] if item.get("by"))
    environ = {"ELT_HACKERNEWS_MAX_ITEMS": "30"}

    with HackerNewsReplay(recorded, max_item=first_run) as server, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, tmp_path / "data", ELT_HACKERNEWS_BASE_URL=server.base_url, **environ)
        summary, failures = run(instance, HACKERNEWS_ASSET)
        assert summary.ok and not failures, (summary.runs, failures)
        warehouse = summary.warehouse
        columns = "id, score, dead, deleted, parent"
        loaded = {row[0]: row[1:] for row in query(warehouse, f"select {columns} from raw_hackernews.items")}
        assert loaded[stories[0]["id"]][0] == int(spelled[stories[0]["id"]]["score"])
        assert loaded[comments[0]["id"]][1] is False
        assert loaded[comments[1]["id"]][2:] == (False, comments[1]["parent"])
        assert variant_columns(warehouse, "raw_hackernews") == []

        # ten new items, one of them with a name where a user name was: the run fails, nothing of it lands
        server.items[bad["id"]] = {**bad, "by": {"name": bad["by"]}}
        server.max_item = ids[-1]
        summary, failures = run(instance, HACKERNEWS_ASSET)
        assert not summary.success
        [failure] = failures
        day = datetime.fromtimestamp(bad["time"], UTC).date().isoformat()
        assert f"item {bad['id']}" in failure and "`by`" in failure and f'{{"name": "{bad["by"]}"}}' in failure
        assert f"posted {day}" in failure, failure
        assert query(warehouse, "select count(*), max(id) from raw_hackernews.items") == [(20, first_run)]

        # fixed: the next run asks for the same ten items (the cursor did not move) and loads each once
        server.items[bad["id"]] = bad
        server.clear_requests()
        summary, failures = run(instance, HACKERNEWS_ASSET)
        assert summary.ok and not failures, (summary.runs, failures)
        assert server.requested_item_ids() == ids[20:]
    assert query(warehouse, "select count(*), count(distinct id) from raw_hackernews.items") == [(30, 30)]
    assert variant_columns(warehouse, "raw_hackernews") == []


# -- the shop (PostgreSQL, Sling) ------------------------------------------------------------------------------------


def test_shop_column_retyped_in_postgres_fails_naming_table_column_and_value_and_keeps_the_raw_tables(
    own_shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = "select (select count(*) from raw_shop.orders), (select sum(price) from raw_shop.products)"
    types = """
        select table_name, column_name, data_type from information_schema.columns
        where table_schema = 'raw_shop' and column_name in ('quantity', 'price') order by 1
    """
    with dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, tmp_path / "data", ELT_SHOP_POSTGRES_URL=own_shop_url)
        summary, failures = run(instance, SHOP_ASSETS)
        assert summary.ok and not failures, (summary.runs, failures)
        warehouse = summary.warehouse
        before = query(warehouse, snapshot)
        assert before[0][0] == SMALL_SHOP.orders

        with psycopg.connect(own_shop_url, autocommit=True) as conn:
            conn.execute("alter table data.orders alter column quantity type text")
            conn.execute("alter table data.products alter column price type text")
            conn.execute(
                "insert into data.orders (customer_id, product_id, quantity, total_amount, order_date)"
                " select 1, 1, 'abc', 9.99, max(order_date) + interval '1 day' from data.orders"
            )
            conn.execute("update data.products set price = 'n/a' where product_id = 2")
        summary, failures = run(instance, SHOP_ASSETS)
        assert not summary.success
        [failure] = failures
        assert "raw_shop.orders: column `quantity` holds 'abc'" in failure, failure
        assert "raw_shop.products: column `price` holds 'n/a'" in failure, failure
        # products were not truncated, the re-read orders not deleted: the raw tables are as they were
        assert query(warehouse, snapshot) == before

        # fixed values, the columns still text in PostgreSQL: they load as the declared types, each row once
        with psycopg.connect(own_shop_url, autocommit=True) as conn:
            conn.execute("update data.orders set quantity = '3' where quantity = 'abc'")
            conn.execute("update data.products set price = '12.50' where product_id = 2")
        summary, failures = run(instance, SHOP_ASSETS)
        assert summary.ok and not failures, (summary.runs, failures)
    assert query(warehouse, "select count(*), count(distinct order_id) from raw_shop.orders") == [
        (SMALL_SHOP.orders + 1, SMALL_SHOP.orders + 1)
    ]
    assert query(warehouse, "select quantity from raw_shop.orders order by order_date desc limit 1") == [(3,)]
    assert query(warehouse, "select count(*) from raw_shop.products") == [(SMALL_SHOP.products,)]
    assert query(warehouse, types) == [("orders", "quantity", "INTEGER"), ("products", "price", "DECIMAL(10,2)")]
