"""The bulk snapshot path (DuckDB's postgres extension) lands exactly what Sling lands, and Sling's next incremental
run continues from it, moving only the changed rows. Real PostgreSQL, real Sling, real DuckDB."""

from pathlib import Path

import duckdb
import psycopg
import pytest

from extract.shop.replicate import replicate_shop, rows_loaded, stream_plans
from extract.shop.seed import seed_shop
from extract.shop.snapshot import ShopSnapshotError, snapshot_shop
from tests.fixtures_shop import SMALL_SHOP, with_database

TABLES = sorted(plan.table for plan in stream_plans().values())


def _describe(warehouse: Path) -> dict[str, list[tuple[str, str]]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {table: [row[:2] for row in con.sql(f"describe {table}").fetchall()] for table in TABLES}


def _content(warehouse: Path) -> dict[str, list[tuple]]:
    """Every row of every raw table but the load timestamp, sorted."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: sorted(con.sql(f"select * exclude (_sling_loaded_at) from {table}").fetchall()) for table in TABLES
        }


@pytest.fixture(scope="module")
def shop_url(shop_postgres_url: str) -> str:
    with psycopg.connect(shop_postgres_url, autocommit=True) as conn:
        conn.execute("drop database if exists snapshot_paths")
        conn.execute("create database snapshot_paths")
    url = with_database(shop_postgres_url, "snapshot_paths")
    seed_shop(url, customers=SMALL_SHOP.customers, products=SMALL_SHOP.products, orders=SMALL_SHOP.orders)
    with psycopg.connect(url) as conn:  # one tombstone, so that table has a row to compare too
        conn.execute("delete from data.orders where order_id = 5")
    return url


def test_both_paths_give_identical_raw_tables_and_sling_continues_from_the_snapshot(
    shop_url: str, tmp_path: Path
) -> None:
    by_sling, by_snapshot = tmp_path / "sling.duckdb", tmp_path / "snapshot.duckdb"
    replicate_shop(shop_url, by_sling, bulk_first_load=False)
    loaded = snapshot_shop(shop_url, by_snapshot)
    assert loaded == {
        "raw_shop.customers": SMALL_SHOP.customers,
        "raw_shop.products": SMALL_SHOP.products,
        "raw_shop.orders": SMALL_SHOP.orders - 1,
        "raw_shop.deletions": 1,
    }
    assert _describe(by_snapshot) == _describe(by_sling)  # same tables, column names and types
    assert _content(by_snapshot) == _content(by_sling)
    with duckdb.connect(str(by_snapshot), read_only=True) as con:  # one load timestamp for the whole snapshot
        assert con.sql("select count(distinct _sling_loaded_at) from raw_shop.orders").fetchone() == (1,)

    # an edit in PostgreSQL, then Sling's incremental run on the snapshot's warehouse: it starts from the
    # snapshot's high-water mark and moves only the changed rows (and the ones at the mark)
    with duckdb.connect(str(by_snapshot), read_only=True) as con:
        (mark,) = con.sql("select max(updated_at) from raw_shop.orders").fetchone()
    with psycopg.connect(shop_url) as conn:
        conn.execute("update data.orders set quantity = quantity + 1 where order_id = 3")
        expected = conn.execute("select count(*) from data.orders where updated_at >= %s", [mark]).fetchone()[0]
    log = replicate_shop(shop_url, by_snapshot)  # every raw table exists: no snapshot, Sling only
    assert "bulk snapshot" not in log
    assert rows_loaded(log)["raw_shop.orders"] == expected == 2  # the edited order and the one at the mark
    replicate_shop(shop_url, by_sling)
    assert _content(by_snapshot) == _content(by_sling)


def test_replicate_shop_snapshots_the_first_load_and_reports_its_rows(shop_url: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    log = replicate_shop(shop_url, warehouse)
    assert "bulk snapshot (DuckDB postgres extension)" in log
    assert rows_loaded(log)["raw_shop.orders"] == SMALL_SHOP.orders - 1
    with psycopg.connect(shop_url) as conn:
        source = sorted(conn.execute("select order_id, quantity, order_date, updated_at from data.orders").fetchall())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        raw = sorted(con.sql("select order_id, quantity, order_date, updated_at from raw_shop.orders").fetchall())
    assert raw == source


def test_a_failed_snapshot_names_the_source_hides_the_password_and_changes_nothing(
    shop_url: str, tmp_path: Path
) -> None:
    warehouse = tmp_path / "w.duckdb"
    snapshot_shop(shop_url, warehouse, ["customers"])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = sorted(con.sql("select * from raw_shop.customers").fetchall())
    url = with_database(shop_url, "postgres")  # reachable, but it has no `data` schema
    with pytest.raises(ShopSnapshotError) as failure:
        snapshot_shop(url, warehouse)
    message = str(failure.value)
    assert "/postgres" in message and "nothing was changed" in message
    assert url.split(":")[2].split("@")[0] not in message  # the password
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert sorted(con.sql("select * from raw_shop.customers").fetchall()) == before
