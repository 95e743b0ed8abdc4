"""The shop slice: PostgreSQL `data.*` -> Sling -> `raw_shop.*` in the warehouse."""
# no `from __future__ import annotations`: Dagster reads the `context` annotation at definition time

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_sling import DagsterSlingTranslator, SlingConnectionResource, SlingResource, sling_assets

from extract.shop.connection import check_reachable, describe, scrub
from extract.shop.demo_postgres import DemoPostgres
from extract.shop.replicate import REPLICATION_CONFIG
from extract.shop.seed import seed_shop
from extract.tooling import install_duckdb_extensions
from orchestration.lib.asset_keys import WAREHOUSE_POOL, table_asset_key
from orchestration.lib.warehouse import WarehouseResource

RAW_SCHEMA = "raw_shop"  # the schema in the replication's `object: raw_shop.{stream_table}`


class ShopSlingTranslator(DagsterSlingTranslator):
    """Key each stream by where it lands (`raw_shop/<table>`), in group `shop`."""

    def get_asset_spec(self, stream_definition: Mapping[str, Any]) -> dg.AssetSpec:
        table = stream_definition["name"].split(".")[-1]
        return (
            super()
            .get_asset_spec(stream_definition)
            .replace_attributes(
                key=table_asset_key(RAW_SCHEMA, table),
                deps=[],  # the PostgreSQL tables are not assets of this platform
                group_name="shop",
                description=f"`{stream_definition['name']}` from the shop PostgreSQL, copied by Sling "
                f"into `{RAW_SCHEMA}.{table}` with a `_sling_loaded_at` load timestamp.",
            )
            .merge_attributes(kinds={"postgres", "duckdb"})
        )


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


def _warehouse_connection(location: str) -> SlingConnectionResource:
    """Sling's WAREHOUSE: a local DuckDB file, or a MotherDuck database (token from MOTHERDUCK_TOKEN)."""
    if location.startswith("md:"):
        return SlingConnectionResource(
            name="WAREHOUSE",
            type="motherduck",
            database=location.removeprefix("md:"),
            motherduck_token=os.environ.get("MOTHERDUCK_TOKEN"),
        )
    return SlingConnectionResource(name="WAREHOUSE", type="duckdb", instance=location)


@sling_assets(
    replication_config=REPLICATION_CONFIG,
    dagster_sling_translator=ShopSlingTranslator(),
    name="shop_sling",
    pool=WAREHOUSE_POOL,
)
def shop_assets(
    context: dg.AssetExecutionContext,
    shop_postgres: ShopPostgresResource,
    warehouse: WarehouseResource,
) -> Iterator[Any]:
    """Replicate customers, products and orders (full refresh); report each table's row count and columns."""
    location = warehouse.checked_location()
    if not warehouse.is_motherduck:
        install_duckdb_extensions()  # Sling's DuckDB CLI reads rows over http: httpfs, from its wheel
    with shop_postgres.session(Path(warehouse.data_dir) / "demo_postgres") as url:
        source = describe(url)
        context.log.info(f"replicating shop tables from {source} into {location}")
        sling = SlingResource(
            connections=[
                SlingConnectionResource(name="SHOP", type="postgres", connection_string=url),
                _warehouse_connection(location),
            ]
        )
        try:  # materialize the iterator here so Sling is done (and its DuckDB CLI gone) before we read back
            events = list(sling.replicate(context=context))
        except Exception as error:  # Sling's failure text is its whole log: keep it, minus the password
            raise dg.Failure(
                description=f"Sling replication from the shop PostgreSQL at {source} failed",
                metadata={"sling_output": dg.MetadataValue.text(scrub(str(error), url)[-8000:])},
            ) from None
    with warehouse.connect(read_only=True) as con:  # counts in-process: `sling conns exec` costs ~1 s a table
        for event in events:
            table = f"{RAW_SCHEMA}.{event.asset_key.path[-1]}"
            row_count = con.sql(f"select count(*) from {table}").fetchone()[0]
            columns = con.sql(f"describe {table}").fetchall()
            yield event._replace(
                metadata={
                    **(event.metadata or {}),
                    # dagster's standard table keys (its TableMetadataSet is not exported from `dagster`)
                    "dagster/table_name": table,
                    "dagster/row_count": dg.MetadataValue.int(row_count),
                    "dagster/storage_kind": "motherduck" if warehouse.is_motherduck else "duckdb",
                    "dagster/column_schema": dg.TableSchema(
                        columns=[dg.TableColumn(name=name, type=kind) for name, kind, *_ in columns]
                    ),
                    "source": source,
                }
            )
