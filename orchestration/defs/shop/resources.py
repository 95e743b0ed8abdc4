"""The shop database: `ELT_SHOP_POSTGRES_URL`, else a seeded demo PostgreSQL started for the step."""
# no `from __future__ import annotations`: Dagster reads resource field annotations at definition time

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from extract.shop.connection import check_reachable
from extract.shop.demo_postgres import DemoPostgres
from extract.shop.seed import seed_shop

URL_SETTING = "ELT_SHOP_POSTGRES_URL"


class ShopPostgresResource(dg.ConfigurableResource):
    """The shop database. With no url, a seeded demo PostgreSQL runs for the duration of the step."""

    url: str | None = None
    demo_data_dir: str | None = None  # default: <warehouse data_dir>/demo_postgres

    @contextmanager
    def session(self, default_data_dir: Path) -> Iterator[str]:
        """Yield a URL to replicate from; starts and seeds the demo server when no url is configured."""
        if self.url:
            check_reachable(self.url)
            yield self.url
            return
        with DemoPostgres(Path(self.demo_data_dir or default_data_dir)) as demo:
            seed_shop(demo.url)  # deterministic, so re-seeding each run gives the same tables
            yield demo.url


@dg.definitions
def resources() -> dg.Definitions:
    """The url holds a password: it stays in the environment (`dg.EnvVar`), never in the definitions or the UI."""
    url = dg.EnvVar(URL_SETTING) if os.environ.get(URL_SETTING) else None
    return dg.Definitions(resources={"shop_postgres": ShopPostgresResource(url=url)})
