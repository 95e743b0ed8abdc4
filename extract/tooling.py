"""Make the bundled tool binaries findable offline, before anything imports `sling` or starts dbt, dlt or Dagster.

- Sling: its Python wrapper downloads a Go binary at import unless SLING_BINARY points at one; the
  `sling-linux-amd64` wheel ships it. Sling writes DuckDB through the DuckDB CLI (DUCKDB_PATH, from the `duckdb-cli`
  wheel) and must use extensions installed from wheels, not download them.
- Telemetry: dbt, dlt and Dagster phone home unless told not to.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil

OWNER_VARIABLE = "ELT_OWNER_PROCESS"


def _duckdb_cli() -> str | None:
    candidate = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for site in [*map(Path, sys.path), candidate / "site-packages"]:
        binary = site / "duckdb_cli" / "duckdb"
        if binary.is_file():
            return str(binary)
    return None


def configure_offline_tools() -> None:
    """Idempotent; respects values the user already set."""
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("SLING_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DUCKDB_USE_INSTALLED_EXTENSIONS", "true")
    if "SLING_BINARY" not in os.environ:
        try:
            import sling_linux_amd64

            os.environ["SLING_BINARY"] = sling_linux_amd64.SLING_BIN
        except ImportError:  # other platforms: the sling wrapper's own download applies
            pass
    if "DUCKDB_PATH" not in os.environ and (cli := _duckdb_cli()):
        os.environ["DUCKDB_PATH"] = cli


def install_duckdb_extensions(names: tuple[str, ...] = ("httpfs",)) -> None:
    """Install DuckDB extensions from their PyPI wheels into DuckDB's default extension folder (`~/.duckdb`).

    Sling's DuckDB target pipes rows to the DuckDB CLI through `read_csv('http://localhost...')`, which needs
    httpfs; offline the CLI cannot download it, and DUCKDB_USE_INSTALLED_EXTENSIONS makes Sling load the
    installed copy. Idempotent and cheap: skips extensions already installed.
    """
    import duckdb
    import duckdb_extensions

    with duckdb.connect() as con:
        installed = {
            row[0] for row in con.sql("select extension_name from duckdb_extensions() where installed").fetchall()
        }
        for name in names:
            if name not in installed:
                duckdb_extensions.import_extension(name, con=con)


@contextmanager
def scoped_environ(variables: Mapping[str, str]) -> Iterator[None]:
    """Set `variables` in os.environ for the block (what child processes and libpq read), then restore them."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def owner_environ() -> dict[str, str]:
    """The variable that names this process as the owner of a tool it starts (dbt, Sling and the DuckDB CLI Sling
    starts in turn): `<pid>:<start time>`. A process killed with SIGKILL cannot stop its children, and a dbt or Sling
    that outlives its run keeps the warehouse file locked; orchestration/lib/runs.py ends the processes whose owner
    is gone."""
    me = psutil.Process()
    return {OWNER_VARIABLE: f"{me.pid}:{me.create_time():.3f}"}
