"""The local Dagster instance of an environment (`<ELT_DATA_DIR>/dagster`) that `elt run` and `elt dev` use."""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_YAML = """\
# Written by `elt` for the local Dagster instance.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1  # one writer per DuckDB warehouse (pool `duckdb_warehouse`)
"""


def prepare_dagster_home(dagster_home: Path) -> Path:
    """Create the instance folder with its dagster.yaml (kept if the user edited it) and point DAGSTER_HOME at it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home
