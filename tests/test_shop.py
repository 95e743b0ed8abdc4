"""The shop source end to end: seeded PostgreSQL -> Sling -> DuckDB `raw_shop.*`, plain and via Dagster."""

import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import duckdb
import psycopg
import pytest

from extract.shop.connection import ShopPostgresUnreachable
from extract.shop.replicate import replicate_shop
from extract.shop.seed import seed_shop
from orchestration.lib.warehouse import WarehouseResource
from orchestration.shop.assets import ShopPostgresResource, shop_assets

EXPECTED_COLUMNS = {
    "customers": ["customer_id", "first_name", "last_name", "email", "_sling_loaded_at"],
    "products": ["product_id", "name", "description", "price", "_sling_loaded_at"],
    "orders": [
        "order_id",
        "customer_id",
        "product_id",
        "quantity",
        "total_amount",
        "order_date",
        "_sling_loaded_at",
    ],
}
EXPECTED_COUNTS = {"customers": 500, "products": 40, "orders": 6000}


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _content_hashes(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row, in key order, of each shop table."""
    keys = {"customers": "customer_id", "products": "product_id", "orders": "order_id"}
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


def _materialize_shop(url: str | None, tmp_path: Path, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Materialize the shop assets into `<tmp_path>/w.duckdb`; no url means the demo PostgreSQL."""
    return dg.materialize(
        [shop_assets],
        resources={
            "shop_postgres": ShopPostgresResource(url=url),
            "warehouse": WarehouseResource(env_name="dev", location=str(tmp_path / "w.duckdb"), data_dir=str(tmp_path)),
        },
        raise_on_error=raise_on_error,
    )


def test_seed_is_deterministic_and_idempotent(shop_postgres_url: str) -> None:
    with psycopg.connect(shop_postgres_url, autocommit=True) as conn:  # own database: the session one stays put
        conn.execute("drop database if exists seed_check")
        conn.execute("create database seed_check")
    url = _with_database(shop_postgres_url, "seed_check")

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
    replicate_shop(shop_postgres_url, warehouse)
    tables = _raw_tables(warehouse)
    assert {table: count for table, (count, _) in tables.items()} == EXPECTED_COUNTS
    assert {table: columns for table, (_, columns) in tables.items()} == EXPECTED_COLUMNS

    replicate_shop(shop_postgres_url, warehouse)
    assert _raw_tables(warehouse) == tables


def test_dagster_materializes_raw_shop_assets(shop_postgres_url: str, tmp_path: Path) -> None:
    assert {key.to_user_string() for key in shop_assets.keys} == {f"raw_shop/{table}" for table in EXPECTED_COUNTS}
    assert set(shop_assets.group_names_by_key.values()) == {"shop"}

    result = _materialize_shop(shop_postgres_url, tmp_path)
    assert result.success
    row_counts = {
        event.asset_key.path[-1]: event.materialization.metadata["dagster/row_count"].value
        for event in result.get_asset_materialization_events()
    }
    assert row_counts == EXPECTED_COUNTS
    assert {table: count for table, (count, _) in _raw_tables(tmp_path / "w.duckdb").items()} == EXPECTED_COUNTS


def test_dagster_without_url_runs_the_seeded_demo_database(tmp_path: Path) -> None:
    result = _materialize_shop(None, tmp_path)
    assert result.success
    assert (tmp_path / "demo_postgres" / "pgdata" / "PG_VERSION").is_file()
    assert {table: count for table, (count, _) in _raw_tables(tmp_path / "w.duckdb").items()} == EXPECTED_COUNTS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("reason", ["nothing listening", "wrong password"])
def test_unreachable_postgres_names_the_server_and_hides_the_password(
    reason: str, shop_postgres_url: str, tmp_path: Path
) -> None:
    password = "not-the-Password-42"
    port = _free_port() if reason == "nothing listening" else urlsplit(shop_postgres_url).port
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


def test_sling_failure_names_the_source_and_hides_the_password(shop_postgres_url: str, tmp_path: Path) -> None:
    url = _with_database(shop_postgres_url, "postgres")  # reachable, but it has no `data` schema
    result = _materialize_shop(url, tmp_path, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data
    assert f"127.0.0.1:{urlsplit(url).port}/postgres" in str(error.user_failure_data.description)
    password = urlsplit(url).password
    assert all(password not in str(event) for event in result.all_events)
