"""The shop source end to end: seeded PostgreSQL -> Sling -> DuckDB `raw_shop.*`, plain and via Dagster."""

import datetime as dt
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import psycopg
import pytest
from dagster._utils.schedules import cron_string_iterator

from extract.shop.connection import ShopPostgresUnreachable
from extract.shop.replicate import replicate_shop, rows_loaded
from extract.shop.seed import seed_shop
from orchestration.defs.shop.assets import shop_assets
from orchestration.defs.shop.resources import ShopPostgresResource
from orchestration.defs.shop.schedules import SHOP_ORDERS_JOB, schedules
from orchestration.lib.asset_keys import WAREHOUSE_POOL, table_asset_key
from orchestration.lib.warehouse import WarehouseResource
from tests.fixtures_shop import DEV_WINDOW, SMALL_SHOP, with_database
from tests.support import free_port, query

EXPECTED_COLUMNS = {
    "customers": ["customer_id", "first_name", "last_name", "email", "updated_at", "_sling_loaded_at"],
    "products": ["product_id", "name", "description", "price", "updated_at", "_sling_loaded_at"],
    "orders": [
        "order_id",
        "customer_id",
        "product_id",
        "quantity",
        "total_amount",
        "order_date",
        "updated_at",
        "_sling_loaded_at",
    ],
    "deletions": ["table_name", "row_id", "deleted_at", "_sling_loaded_at"],
}
EXPECTED_COUNTS = {"customers": 500, "products": 40, "orders": 6000, "deletions": 0}
ORDER_COLUMNS = "order_id, customer_id, product_id, quantity, total_amount, order_date"


def _content_hashes(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row, in key order, of each shop table."""
    keys = {"customers": "customer_id", "products": "product_id", "orders": "order_id", "deletions": "row_id"}
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(
                f"select count(*), md5(string_agg(t::text, '|' order by {key})) from data.{table} t"
            ).fetchone()
            for table, key in keys.items()
        }


def _raw_tables(path: Path) -> dict[str, tuple[int, list[str]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            table: (
                con.sql(f"select count(*) from raw_shop.{table}").fetchone()[0],
                [row[0] for row in con.sql(f"describe raw_shop.{table}").fetchall()],
            )
            for table in EXPECTED_COLUMNS
        }


def _raw_snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every row of every raw table, sorted: equal snapshots mean nothing changed."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {table: sorted(con.sql(f"select * from raw_shop.{table}").fetchall()) for table in EXPECTED_COLUMNS}


def _resources(url: str | None, warehouse: Path) -> dict[str, Any]:
    return {
        "shop_postgres": ShopPostgresResource(url=url),
        "warehouse": WarehouseResource(env_name="dev", location=str(warehouse), data_dir=str(warehouse.parent)),
    }


def _materialize_shop(url: str | None, tmp_path: Path, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Materialize the shop assets into `<tmp_path>/w.duckdb`; no url means the demo PostgreSQL."""
    return dg.materialize(
        [shop_assets], resources=_resources(url, tmp_path / "w.duckdb"), raise_on_error=raise_on_error
    )


def _slice_definitions(monkeypatch: pytest.MonkeyPatch, **environ: str) -> dg.Definitions:
    """The shop slice as dg loads it, for the environment `environ` resolves to."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return dg.Definitions.merge(dg.Definitions(assets=[shop_assets]), schedules())


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Materialization metadata values per raw table name."""
    return {
        event.asset_key.path[-1]: {key: value.value for key, value in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def _source_orders(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return sorted(conn.execute(f"select {ORDER_COLUMNS} from data.orders").fetchall())


def _raw_orders(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return sorted(con.sql(f"select {ORDER_COLUMNS} from raw_shop.orders").fetchall())


def test_seed_is_deterministic_and_idempotent(shop_postgres_url: str) -> None:
    with psycopg.connect(shop_postgres_url, autocommit=True) as conn:  # own database: the session one stays put
        conn.execute("drop database if exists seed_check")
        conn.execute("create database seed_check")
    url = with_database(shop_postgres_url, "seed_check")

    seed_shop(url)
    first = _content_hashes(url)
    seed_shop(url)
    assert _content_hashes(url) == first
    assert {table: count for table, (count, _) in first.items()} == EXPECTED_COUNTS

    with psycopg.connect(url) as conn:
        low, high = conn.execute("select min(order_date), max(order_date) from data.orders").fetchone()
        mismatched = conn.execute(
            "select count(*) from data.orders o join data.products p using (product_id)"
            " where o.total_amount <> o.quantity * p.price"
        ).fetchone()[0]
    assert (low.year, low.month, high.year, high.month) == (2024, 1, 2024, 6)
    assert mismatched == 0

    seed_shop(url, seed=7)
    assert _content_hashes(url) != first


def test_sling_replicates_every_table_and_reruns_without_duplicates(shop_postgres_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    first_log = replicate_shop(shop_postgres_url, warehouse)
    tables = _raw_tables(warehouse)
    assert {table: count for table, (count, _) in tables.items()} == EXPECTED_COUNTS
    assert {table: columns for table, (_, columns) in tables.items()} == EXPECTED_COLUMNS
    assert rows_loaded(first_log) == {f"raw_shop.{table}": count for table, count in EXPECTED_COUNTS.items()}

    # nothing new in PostgreSQL: orders re-reads only the rows at its high-water mark, and merges them
    with psycopg.connect(shop_postgres_url) as conn:
        at_high_water_mark = conn.execute(
            "select count(*) from data.orders where order_date = (select max(order_date) from data.orders)"
        ).fetchone()[0]
    second_log = replicate_shop(shop_postgres_url, warehouse)
    assert rows_loaded(second_log)["raw_shop.orders"] == at_high_water_mark
    # customers and products are read incrementally too: only the one row at each high-water mark
    assert rows_loaded(second_log)["raw_shop.customers"] == rows_loaded(second_log)["raw_shop.products"] == 1
    assert _raw_tables(warehouse) == tables
    assert _raw_orders(warehouse) == _source_orders(shop_postgres_url)


def test_incremental_orders_pick_up_new_and_updated_rows_without_duplicates(
    own_shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "w.duckdb"
    first = _metadata(_materialize_shop(own_shop_url, tmp_path))
    assert {table: meta["rows_loaded"] for table, meta in first.items()} == {
        "customers": SMALL_SHOP.customers,
        "products": SMALL_SHOP.products,
        "orders": SMALL_SHOP.orders,
        "deletions": 0,
    }
    assert first["orders"]["mode"] == "incremental"
    assert first["orders"]["incremental_from"] == "beginning"

    with psycopg.connect(own_shop_url) as conn:
        high_water_mark = conn.execute("select max(order_date) from data.orders").fetchone()[0]
        conn.execute(  # three new orders after the high-water mark
            "insert into data.orders (customer_id, product_id, quantity, total_amount, order_date)"
            " select 1, 1, n, 10 * n, %s + n * interval '1 hour' from generate_series(1, 3) n",
            [high_water_mark],
        )
        conn.execute(  # the newest order is changed in place (its order_date stays the high-water mark)
            "update data.orders set quantity = quantity + 1 where order_date = %s", [high_water_mark]
        )
        conn.execute(  # an old order is moved to a later date, with a new quantity
            "update data.orders set quantity = 5, order_date = %s + interval '4 hours' where order_id = 1",
            [high_water_mark],
        )
        # old, in place: the trigger moves its updated_at, so it is re-read too
        conn.execute("update data.orders set quantity = 9 where order_id = 2")
        # the seed stamps an order's updated_at with its order_date: the high-water marks agree before the edits
        expected_read = conn.execute(
            "select count(*) from data.orders where updated_at >= %s", [high_water_mark]
        ).fetchone()[0]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        customers_before = con.sql("select * from raw_shop.customers order by customer_id").fetchall()
        order_2_before = con.sql(f"select {ORDER_COLUMNS} from raw_shop.orders where order_id = 2").fetchone()

    # the schedule's intraday job: orders only, and of orders only what changed since the high-water mark
    defs = dg.Definitions.merge(
        _slice_definitions(monkeypatch, ELT_DATA_DIR=str(tmp_path)),
        dg.Definitions(resources=_resources(own_shop_url, warehouse)),
    )
    second = _metadata(defs.resolve_job_def(SHOP_ORDERS_JOB).execute_in_process())
    assert set(second) == {"orders", "deletions"}
    assert second["orders"]["rows_loaded"] == expected_read < SMALL_SHOP.orders
    assert second["orders"]["incremental_from"] == str(high_water_mark)
    assert second["orders"]["dagster/row_count"] == SMALL_SHOP.orders + 3
    source = _source_orders(own_shop_url)
    raw = _raw_orders(warehouse)
    assert raw == source  # updates in (the in-place edit of an old order too), new appended
    assert [row for row in raw if row[0] == 2] != [order_2_before]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("select count(*) = count(distinct order_id) from raw_shop.orders").fetchone()[0]
        assert con.sql("select * from raw_shop.customers order by customer_id").fetchall() == customers_before

    # nothing new since: Sling does not start, the tables stay as they are
    run_orders = defs.resolve_job_def(SHOP_ORDERS_JOB)
    snapshot = _raw_snapshot(warehouse)
    third = _metadata(run_orders.execute_in_process())
    assert {table: meta["rows_loaded"] for table, meta in third.items()} == {"orders": 0, "deletions": 0}
    assert "Sling did not start" in third["orders"]["window"]
    assert third["orders"]["rows_changed"] == 0
    assert _raw_snapshot(warehouse) == snapshot
    # a row committed later with exactly the high-water mark's updated_at (the trigger cannot stamp it so; the
    # check must not take it for a row already loaded): Sling runs and lands it
    with duckdb.connect(str(warehouse), read_only=True) as con:
        mark = con.sql("select max(updated_at) from raw_shop.orders").fetchone()[0]
    with psycopg.connect(own_shop_url) as conn:
        conn.execute("alter table data.orders disable trigger user")
        conn.execute(
            "insert into data.orders (customer_id, product_id, quantity, total_amount, order_date, updated_at)"
            " values (1, 1, 1, 10, %s, %s)",
            [mark, mark],
        )
        conn.execute("alter table data.orders enable trigger user")
    fourth = _metadata(run_orders.execute_in_process())
    assert "Sling did not start" not in fourth["orders"]["window"]
    assert fourth["orders"]["rows_loaded"] >= 1
    assert _raw_orders(warehouse) == _source_orders(own_shop_url)

    # a bulk fix behind the trigger's back (triggers off) is missed by the incremental run: a full reload, which
    # keeps the table (and its columns), catches it
    with psycopg.connect(own_shop_url) as conn:
        conn.execute("alter table data.orders disable trigger user")
        conn.execute("update data.orders set quantity = 7 where order_id = 3")
        conn.execute("alter table data.orders enable trigger user")
    source = _source_orders(own_shop_url)
    reload = dg.materialize(
        [shop_assets],
        selection=[table_asset_key("raw_shop", "orders")],
        resources=_resources(own_shop_url, warehouse),
        run_config={"ops": {"shop_sling": {"config": {"full_reload": True}}}},
    )
    assert _metadata(reload)["orders"]["rows_loaded"] == len(source)
    assert _raw_orders(warehouse) == source


def test_schema_drift_added_column_appears_and_dropped_column_does_not_fail(own_shop_url: str, tmp_path: Path) -> None:
    _materialize_shop(own_shop_url, tmp_path)

    with psycopg.connect(own_shop_url) as conn:
        conn.execute("alter table data.orders add column channel text not null default 'web'")
        conn.execute("alter table data.customers add column phone text")
        conn.execute(
            "insert into data.orders (customer_id, product_id, total_amount, order_date, channel)"
            " select 1, 1, 9.99, max(order_date) + interval '1 day', 'app' from data.orders"
        )
    added = _metadata(_materialize_shop(own_shop_url, tmp_path))
    assert "channel" in [column.name for column in added["orders"]["dagster/column_schema"].columns]
    assert "phone" in [column.name for column in added["customers"]["dagster/column_schema"].columns]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.sql("select channel from raw_shop.orders order by order_date desc limit 1").fetchone() == ("app",)

    with psycopg.connect(own_shop_url) as conn:
        conn.execute("alter table data.orders drop column quantity")
        conn.execute("alter table data.customers drop column last_name")
        conn.execute(
            "insert into data.orders (customer_id, product_id, total_amount, order_date, channel)"
            " select 2, 2, 19.99, max(order_date) + interval '1 day', 'app' from data.orders"
        )
    dropped = _materialize_shop(own_shop_url, tmp_path)
    assert dropped.success
    columns = _raw_tables(tmp_path / "w.duckdb")
    assert "quantity" in columns["orders"][1] and "last_name" in columns["customers"][1]  # kept, for dbt's sake
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        newest = con.sql(
            "select customer_id, quantity from raw_shop.orders order by order_date desc limit 1"
        ).fetchone()
        assert newest == (2, None)  # a relation kept alive would keep this read-only instance: the next connect spins
        # nothing new in customers: a dropped column alone does not start Sling, the loaded values stay
        assert con.sql("select count(*) from raw_shop.customers where last_name is null").fetchone() == (0,)
    assert _metadata(dropped)["customers"]["rows_loaded"] == 0

    with psycopg.connect(own_shop_url) as conn:
        conn.execute("insert into data.customers (first_name, email) values ('Ada', 'ada@example.com')")
    signed_up = _metadata(_materialize_shop(own_shop_url, tmp_path))
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        # customers are read incrementally: the rows read from then on (the new one, and the one at the high-water
        # mark that Sling reads again) have NULL in the dropped column, the others keep what was loaded
        nulls = con.sql("select first_name from raw_shop.customers where last_name is null").fetchall()
    assert ("Ada",) in nulls and len(nulls) == signed_up["customers"]["rows_loaded"] == 2
    assert signed_up["orders"]["rows_loaded"] == 0  # nothing new there, and the dropped quantity no longer counts


@pytest.fixture(scope="module")
def loaded_warehouse(shop_postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse the shop assets loaded once; tests copy it before they change it."""
    folder = tmp_path_factory.mktemp("loaded")
    result = _materialize_shop(shop_postgres_url, folder)
    assert {
        event.asset_key.path[-1]: event.materialization.metadata["dagster/row_count"].value
        for event in result.get_asset_materialization_events()
    } == EXPECTED_COUNTS
    return folder / "w.duckdb"


def test_dagster_materializes_raw_shop_assets_with_metadata(loaded_warehouse: Path) -> None:
    assert {key.to_user_string() for key in shop_assets.keys} == {f"raw_shop/{table}" for table in EXPECTED_COUNTS}
    assert set(shop_assets.group_names_by_key.values()) == {"shop"}
    assert shop_assets.op.pool == WAREHOUSE_POOL
    assert {table: count for table, (count, _) in _raw_tables(loaded_warehouse).items()} == EXPECTED_COUNTS


@pytest.mark.parametrize("reason", ["nothing listening", "wrong password"])
def test_unreachable_postgres_names_the_server_hides_the_password_and_keeps_the_tables(
    reason: str, shop_postgres_url: str, loaded_warehouse: Path, tmp_path: Path
) -> None:
    shutil.copy(loaded_warehouse, tmp_path / "w.duckdb")
    before = _raw_snapshot(tmp_path / "w.duckdb")
    password = "not-the-Password-42"
    port = free_port() if reason == "nothing listening" else urlsplit(shop_postgres_url).port
    url = f"postgresql://shop:{password}@127.0.0.1:{port}/shop?sslmode=disable"

    result = _materialize_shop(url, tmp_path, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    message = error.to_string()
    assert ShopPostgresUnreachable.__name__ in message
    assert f"127.0.0.1:{port}/shop" in message
    assert password not in message
    assert all(password not in str(event) for event in result.all_events)
    assert _raw_snapshot(tmp_path / "w.duckdb") == before


def test_sling_failure_names_the_source_hides_the_password_and_keeps_the_tables(
    shop_postgres_url: str, loaded_warehouse: Path, tmp_path: Path
) -> None:
    shutil.copy(loaded_warehouse, tmp_path / "w.duckdb")
    before = _raw_snapshot(tmp_path / "w.duckdb")
    url = with_database(shop_postgres_url, "postgres")  # reachable, but it has no `data` schema
    result = _materialize_shop(url, tmp_path, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data
    assert f"127.0.0.1:{urlsplit(url).port}/postgres" in str(error.user_failure_data.description)
    password = urlsplit(url).password
    assert all(password not in str(event) for event in result.all_events)
    assert _raw_snapshot(tmp_path / "w.duckdb") == before


def test_dagster_without_url_runs_the_seeded_demo_database_and_reruns_without_duplicates(tmp_path: Path) -> None:
    _materialize_shop(None, tmp_path)
    assert (tmp_path / "demo_postgres" / "pgdata" / "PG_VERSION").is_file()
    first = _raw_tables(tmp_path / "w.duckdb")
    assert {table: count for table, (count, _) in first.items()} == EXPECTED_COUNTS
    _materialize_shop(None, tmp_path)  # the demo is re-seeded identically: nothing new, nothing doubled
    assert _raw_tables(tmp_path / "w.duckdb") == first


def test_schedules_request_every_table_at_six_and_orders_at_noon_and_six_pm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = dg.Definitions.merge(
        _slice_definitions(monkeypatch, ELT_DATA_DIR=str(tmp_path)),
        dg.Definitions(resources=_resources(None, tmp_path / "w.duckdb")),
    )
    day = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    requested: dict[int, set[str]] = {}
    for schedule in defs.schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # dev: exists, off
        assert isinstance(schedule, dg.ScheduleDefinition)
        job_assets = defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys
        ticks = cron_string_iterator(day.timestamp(), schedule.cron_schedule, schedule.execution_timezone)
        for tick in ticks:
            if tick >= day + timedelta(days=1):
                break
            run_requests = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
            assert len(run_requests.run_requests or []) == 1
            requested.setdefault(tick.hour, set()).update(key.to_user_string() for key in job_assets)
    every_table = {f"raw_shop/{table}" for table in EXPECTED_COUNTS}
    intraday = {"raw_shop/orders", "raw_shop/deletions"}
    assert requested == {6: every_table, 12: intraday, 18: intraday}

    prod = _slice_definitions(monkeypatch, ELT_ENV="prod", ELT_PROD_DATABASE=str(tmp_path / "prod.duckdb"))
    assert {schedule.default_status for schedule in prod.schedules} == {dg.DefaultScheduleStatus.RUNNING}


def test_the_demo_marts_add_up_to_the_orders_in_the_dev_window(demo_run):
    [(lifetime,)] = query(demo_run.warehouse, "select sum(lifetime_value) from marts.dim_customers")
    [(orders_total,)] = query(demo_run.warehouse, f"select sum(total_amount) from raw_shop.orders where {DEV_WINDOW}")
    assert lifetime == orders_total > 0
