"""The local Dagster instance of an environment (`<ELT_DATA_DIR>/dagster`) that `elt run` and `elt dev` use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from orchestration.lib.environment import data_dir_not_writable

DAGSTER_YAML = """\
# Written by `elt` for the local Dagster instance.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1  # one writer per DuckDB warehouse (pool `duckdb_warehouse`)
"""


def prepare_dagster_home(dagster_home: Path) -> Path:
    """Create the instance folder with its dagster.yaml (kept if the user edited it) and point DAGSTER_HOME at it.

    The first write under ELT_DATA_DIR of `elt run` and `elt dev`: a folder that cannot be created or written
    raises `DataDirNotWritable` (an `EnvironmentConfigError`) naming ELT_DATA_DIR, not an OSError here or a
    sqlite3.OperationalError from the instance's storage later."""
    try:
        dagster_home.mkdir(parents=True, exist_ok=True)
        config = dagster_home / "dagster.yaml"
        if not config.exists():
            config.write_text(DAGSTER_YAML)
        with tempfile.TemporaryFile(dir=dagster_home):  # the instance's sqlite storage is written here
            pass
    except OSError as error:
        why = f"{error.filename}: {error.strerror}" if error.filename else str(error)
        raise data_dir_not_writable(dagster_home.parent, why) from None
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home
