"""Type drift at ingestion in the shop: a column retyped in the shop's PostgreSQL (Sling). The real pipeline
(`run_pipeline`, Dagster in process) replicates from a PostgreSQL database of the test's own, and the test checks
three things: values that still read as the declared type load as that type, any other value fails the run naming
the table, the column and the value, and nothing partial lands: the raw tables keep their rows, and a re-run after
the source is fixed loads every row exactly once."""

from pathlib import Path

import dagster as dg
import psycopg
import pytest

from tests.fixtures_shop import SMALL_SHOP
from tests.support import query, run_extracts, use_platform_env

# the extract assets alone: dbt's source tests on them are checks too, run by the dbt op, so leave checks out
SHOP_ASSETS = dg.AssetSelection.groups("shop").without_checks()


def run(instance: dg.DagsterInstance):
    """One pass over the shop's assets (no dbt), and the failure descriptions of its failed steps."""
    return run_extracts(instance, SHOP_ASSETS)


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
        summary, failures = run(instance)
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
        summary, failures = run(instance)
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
        summary, failures = run(instance)
        assert summary.ok and not failures, (summary.runs, failures)
    assert query(warehouse, "select count(*), count(distinct order_id) from raw_shop.orders") == [
        (SMALL_SHOP.orders + 1, SMALL_SHOP.orders + 1)
    ]
    assert query(warehouse, "select quantity from raw_shop.orders order by order_date desc limit 1") == [(3,)]
    assert query(warehouse, "select count(*) from raw_shop.products") == [(SMALL_SHOP.products,)]
    assert query(warehouse, types) == [("orders", "quantity", "INTEGER"), ("products", "price", "DECIMAL(10,2)")]
