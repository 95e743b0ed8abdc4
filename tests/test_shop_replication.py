"""Replication that misses nothing: an order edited in place (order_date kept), an updated customer and a deleted
order each reach raw_shop through Sling's incremental runs on `updated_at` / the deletion tombstones, and the shop
marts after an incremental dbt build. Real PostgreSQL (with the seed's triggers), real Sling, real dbt."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg
import pytest

from extract.shop.replicate import replicate_shop, rows_loaded
from extract.shop.seed import seed_shop
from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT
from tests.fixtures_shop import SMALL_SHOP, with_database

pytestmark = pytest.mark.slow  # two replications and two dbt builds of the shop models: 1.5-6 min

SHOP_MARTS = "+fct_orders +dim_customers +dim_products +fct_revenue_daily"


def _dbt(warehouse: Path, target_path: Path, *args: str) -> None:
    """dbt on `warehouse`, as a user runs it from the repository root."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, "--project-dir", str(DBT_PROJECT_DIR)]
        + ["--profiles-dir", str(REPO_ROOT), "--target-path", str(target_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        env={
            **os.environ,
            "ELT_ENV": "dev",
            "ELT_DEV_DATABASE": str(warehouse),
            "ELT_DATA_DIR": str(warehouse.parent),
            "DBT_LOG_PATH": str(target_path / "logs"),
        },
    )
    assert result.returncode == 0, f"dbt {args[0]} failed:\n{result.stdout[-5000:]}\n{result.stderr[-2000:]}"


def _dbt_build(warehouse: Path, target_path: Path) -> None:
    """The shop models and their data tests, every order (the dev window lifted; the unit tests, which set the
    window themselves, run with the whole project's `dbt build` in the session's demo run, tests/conftest.py)."""
    _dbt(
        warehouse,
        target_path,
        "build",
        "--select",
        *SHOP_MARTS.split(),
        "--exclude-resource-type",
        "unit_test",
        "--vars",
        "{ignore_date_limits: true}",
    )


def _query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()


def _source(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def edited_shop(shop_postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small shop replicated and built once, then edited in PostgreSQL (an order in place, a customer, a deleted
    order), replicated again incrementally and built again incrementally."""
    with psycopg.connect(shop_postgres_url, autocommit=True) as conn:
        conn.execute("drop database if exists replication_edits")
        conn.execute("create database replication_edits")
    url = with_database(shop_postgres_url, "replication_edits")
    seed_shop(url, customers=SMALL_SHOP.customers, products=SMALL_SHOP.products, orders=SMALL_SHOP.orders)
    folder = tmp_path_factory.mktemp("replication_edits")
    warehouse = folder / "w.duckdb"
    first_log = replicate_shop(url, warehouse)
    _dbt_build(warehouse, folder / "target")
    marks = {
        table: _query(warehouse, f"select max(updated_at) from raw_shop.{table}")[0][0]
        for table in ("customers", "products", "orders")
    }

    # an old order (not at the high-water mark) edited in place; the order_date stays
    edited, edited_date = _source(url, "select order_id, order_date from data.orders where order_id = 10")[0]
    # an order deleted, of another customer than the edited one
    deleted, deleted_customer = _source(
        url,
        "select order_id, customer_id from data.orders where order_id <> %s and customer_id <>"
        " (select customer_id from data.orders where order_id = %s) order by order_id limit 1 offset 20",
        (edited, edited),
    )[0]
    customer = 7
    with psycopg.connect(url) as conn:
        conn.execute(
            "update data.orders set quantity = quantity + 2, total_amount = total_amount / quantity * (quantity + 2)"
            " where order_id = %s",
            [edited],
        )
        conn.execute("update data.customers set email = 'new.address.7@example.com' where customer_id = %s", [customer])
        conn.execute("delete from data.orders where order_id = %s", [deleted])
    second_log = replicate_shop(url, warehouse)
    _dbt_build(warehouse, folder / "target")
    return {
        "url": url,
        "warehouse": warehouse,
        "first_log": first_log,
        "second_log": second_log,
        "marks": marks,
        "edited": edited,
        "edited_date": edited_date,
        "deleted": deleted,
        "deleted_customer": deleted_customer,
        "customer": customer,
    }


def test_the_seed_stamps_rows_and_the_triggers_maintain_updated_at_and_tombstones(edited_shop: dict) -> None:
    url = edited_shop["url"]
    # the seed's own stamps: distinct per customer, an order last updated when placed (except the edited one)
    assert _source(url, "select count(distinct updated_at) = count(*) from data.customers") == [(True,)]
    assert _source(url, "select count(*) from data.orders where updated_at <> order_date") == [(1,)]
    (edited_at,) = _source(url, "select updated_at from data.orders where order_id = %s", (edited_shop["edited"],))[0]
    assert edited_at > edited_shop["marks"]["orders"]  # the trigger moved it to now
    assert _source(url, "select table_name, row_id from data.deletions") == [("orders", edited_shop["deleted"])]


def test_an_incremental_run_reads_only_what_changed_since_the_high_water_marks(edited_shop: dict) -> None:
    url, marks = edited_shop["url"], edited_shop["marks"]
    first = rows_loaded(edited_shop["first_log"])
    assert first == {
        "raw_shop.customers": SMALL_SHOP.customers,
        "raw_shop.products": SMALL_SHOP.products,
        "raw_shop.orders": SMALL_SHOP.orders,
        "raw_shop.deletions": 0,
    }
    second = rows_loaded(edited_shop["second_log"])
    expected = {
        f"raw_shop.{table}": _source(url, f"select count(*) from data.{table} where updated_at >= %s", (mark,))[0][0]
        for table, mark in marks.items()
    }
    assert second == {**expected, "raw_shop.deletions": 1}
    # the rows at each mark (re-read by `>=`) plus the edited ones: far from a full read
    assert second["raw_shop.customers"] == 2 and second["raw_shop.products"] == 1
    assert second["raw_shop.orders"] <= 3


def test_an_order_edited_in_place_and_an_updated_customer_reach_raw_and_marts(edited_shop: dict) -> None:
    url, warehouse, edited = edited_shop["url"], edited_shop["warehouse"], edited_shop["edited"]
    columns = "order_id, customer_id, product_id, quantity, total_amount, order_date"
    source_order = _source(url, f"select {columns} from data.orders where order_id = %s", (edited,))
    assert source_order[0][-1] == edited_shop["edited_date"]
    assert _query(warehouse, f"select {columns} from raw_shop.orders where order_id = {edited}") == source_order
    fct = f"select quantity, total_amount, ordered_at from marts.fct_orders where order_id = {edited}"
    assert _query(warehouse, fct) == [source_order[0][3:]]

    customer = edited_shop["customer"]
    assert _query(warehouse, f"select email from raw_shop.customers where customer_id = {customer}") == [
        ("new.address.7@example.com",)
    ]
    assert _query(warehouse, f"select email from marts.dim_customers where customer_id = {customer}") == [
        ("new.address.7@example.com",)
    ]
    assert _query(warehouse, "select count(*), count(distinct customer_id) from raw_shop.customers") == [
        (SMALL_SHOP.customers, SMALL_SHOP.customers)
    ]


def test_a_deleted_order_is_flagged_in_raw_and_gone_from_the_marts(edited_shop: dict) -> None:
    url, warehouse, deleted = edited_shop["url"], edited_shop["warehouse"], edited_shop["deleted"]
    # raw keeps the order (the record of what was in the shop) and the tombstone that flags it
    assert _query(warehouse, f"select count(*) from raw_shop.orders where order_id = {deleted}") == [(1,)]
    assert _query(warehouse, "select table_name, row_id from raw_shop.deletions") == [("orders", deleted)]
    assert _query(warehouse, f"select count(*) from staging.stg_shop__orders where order_id = {deleted}") == [(0,)]

    # the incremental marts equal what the source holds now, order by order and per customer
    source_orders = _source(url, "select order_id, quantity, total_amount from data.orders order by order_id")
    assert _query(warehouse, "select order_id, quantity, total_amount from marts.fct_orders order by order_id") == (
        source_orders
    )
    customer = edited_shop["deleted_customer"]
    expected = _source(
        url, "select count(*), coalesce(sum(total_amount), 0) from data.orders where customer_id = %s", (customer,)
    )
    assert (
        _query(warehouse, f"select order_count, lifetime_value from marts.dim_customers where customer_id = {customer}")
        == expected
    )
    daily = _source(url, "select sum(total_amount) from data.orders")
    assert _query(warehouse, "select sum(revenue) from marts.fct_revenue_daily") == daily
