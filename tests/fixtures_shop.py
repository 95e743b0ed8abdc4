"""Fixtures for the shop source: a real PostgreSQL (pgserver binaries) started once per session."""

import inspect
import re
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from extract.shop.demo_postgres import DemoPostgres
from extract.shop.seed import SeedCounts, seed_shop

SMALL_SHOP = SeedCounts(customers=50, products=10, orders=400)


@pytest.fixture(scope="session")
def shop_postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running PostgreSQL whose `shop` database holds the default seed (500 / 40 / 6000 rows)."""
    with DemoPostgres(tmp_path_factory.mktemp("shop_postgres")) as postgres:
        seed_shop(postgres.url)
        yield postgres.url


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@pytest.fixture
def own_shop_url(shop_postgres_url: str, request: pytest.FixtureRequest) -> str:
    """A database of the test's own on the session server, seeded with SMALL_SHOP: for tests that change the
    source (new orders, schema drift) without touching what other tests read."""
    database = re.sub(r"\W", "_", request.node.name.lower())[:60]
    with psycopg.connect(shop_postgres_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{database}"')
        conn.execute(f'create database "{database}"')
    url = with_database(shop_postgres_url, database)
    seed_shop(url, customers=SMALL_SHOP.customers, products=SMALL_SHOP.products, orders=SMALL_SHOP.orders)
    return url


# dbt's dev window (90 days up to the newest order, var dev_window_days in dbt_project.yml)
DEV_WINDOW = "cast(order_date as date) > (select max(cast(order_date as date)) from raw_shop.orders) - 90"


def demo_row_counts(con) -> dict[str, int]:
    """What one `elt run` on the demo shop lands: the seed's defaults, and the marts of the orders inside dbt's
    dev window."""
    shop = {name: parameter.default for name, parameter in inspect.signature(seed_shop).parameters.items()}
    orders_in_window, order_days = con.sql(
        f"select count(*), max(order_date)::date - min(order_date)::date + 1 from raw_shop.orders where {DEV_WINDOW}"
    ).fetchone()
    return {
        "raw_shop.customers": shop["customers"],
        "raw_shop.products": shop["products"],
        "raw_shop.orders": shop["orders"],
        "raw_shop.deletions": 0,  # the demo deletes nothing: the tombstone table exists, empty
        "marts.dim_customers": shop["customers"],
        "marts.dim_products": shop["products"],
        "marts.fct_orders": orders_in_window,
        "marts.fct_revenue_daily": order_days,
    }
