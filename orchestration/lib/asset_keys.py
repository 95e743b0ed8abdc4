"""The one rule for asset keys: `[schema, table]` of where the data lands, the same in every environment.

The database (dev, branch clone or prod) is never part of a key. A raw table that is a dlt child table
(`<parent>__<list field>`, e.g. `events__attendees`) is written by its parent resource, so it belongs to the
parent's asset (`raw_x/events`); dbt models are named `stg_<source>__<entity>s` and are never folded.
"""

import dagster as dg

WAREHOUSE_POOL = "duckdb_warehouse"  # one writer at a time per DuckDB warehouse (limit set in dagster.yaml)
DLT_CHILD_TABLE_SEPARATOR = "__"


def table_asset_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey([schema.lower(), table.lower()])


def raw_table_asset_key(schema: str, table: str) -> dg.AssetKey:
    """The key of the extract asset that writes a raw table (dlt child tables fold into their parent)."""
    return table_asset_key(schema, table.split(DLT_CHILD_TABLE_SEPARATOR)[0])
