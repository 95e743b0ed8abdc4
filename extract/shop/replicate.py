"""Run the shop replication without Dagster (from a shell or a test): `replicate_shop(url, duckdb_path)`.

Dagster runs the same `replication.yaml` through dagster-sling (orchestration/shop/assets.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import extract  # noqa: F401  (points SLING_BINARY / DUCKDB_PATH at the bundled binaries before `sling` loads)
from extract.shop.connection import describe, scrub
from extract.tooling import install_duckdb_extensions

REPLICATION_CONFIG = Path(__file__).with_name("replication.yaml")


class ShopReplicationError(RuntimeError):
    """Sling failed; the message carries its log with the password removed."""


def replicate_shop(source_url: str, duckdb_path: Path, config: Path = REPLICATION_CONFIG) -> str:
    """Copy the shop tables into `raw_shop.*` of a local DuckDB file; returns Sling's log."""
    import sling

    install_duckdb_extensions()
    env = {
        **os.environ,
        "SHOP": source_url,  # Sling resolves connection names from environment variables
        "WAREHOUSE": json.dumps({"type": "duckdb", "instance": str(duckdb_path)}),
    }
    result = subprocess.run(
        [sling.SLING_BIN, "run", "-r", str(config)], env=env, capture_output=True, text=True, timeout=600
    )
    log = scrub(result.stdout + result.stderr, source_url)
    if result.returncode != 0:
        raise ShopReplicationError(f"Sling replication from {describe(source_url)} failed:\n{log[-8000:]}")
    return log
