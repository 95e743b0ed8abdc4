"""Fixtures for the shop source: a real PostgreSQL (pgserver binaries) started once per session."""

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
