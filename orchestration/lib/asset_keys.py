"""The one rule for asset keys: `[schema, table]` of where the data lands, the same in every environment.

The database (dev, branch clone or prod) is never part of a key. dlt child tables (`asteroids__close_approach_data`)
are written by their parent resource, so they belong to the parent's asset (`raw_nasa/asteroids`).
"""

from __future__ import annotations

import dagster as dg

WAREHOUSE_POOL = "duckdb_warehouse"  # one writer at a time per DuckDB warehouse (limit set in dagster.yaml)


def table_asset_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey([schema.lower(), table.lower().split("__")[0]])
