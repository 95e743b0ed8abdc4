"""Fixtures for the shop source: a real PostgreSQL (pgserver binaries), seeded once per session."""

from collections.abc import Iterator

import pytest

from extract.shop.demo_postgres import DemoPostgres
from extract.shop.seed import seed_shop


@pytest.fixture(scope="session")
def shop_postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running PostgreSQL whose `shop` database holds the default seed (500 / 40 / 6000 rows)."""
    with DemoPostgres(tmp_path_factory.mktemp("shop_postgres")) as postgres:
        seed_shop(postgres.url)
        yield postgres.url
