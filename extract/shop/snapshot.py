"""The bulk snapshot path for first loads and full reloads: DuckDB's postgres extension (binary COPY, parallel scans;
offline from the `duckdb-extension-postgres-scanner` wheel) copies whole shop tables into `raw_shop.*`, landing what
Sling would: the same table per stream (replication.yaml's `object`), the same column names, the types that
replication.yaml's `columns:` declares (text as VARCHAR), and `_sling_loaded_at` (timestamp with time zone). The
high-water mark is the table itself: Sling's next incremental run reads `max(updated_at)` from it and continues
from there. replication.yaml stays the one place that says what is copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb
import yaml

from extract.shop.connection import describe, scrub
from extract.shop.replicate import REPLICATION_CONFIG, SLING_DUCKDB_MEMORY_LIMIT, StreamPlan, stream_plans
from extract.tooling import scoped_environ

# Sling's names for the declared types -> DuckDB's
_DECLARED = {"integer": "INTEGER", "bigint": "BIGINT", "timestamp": "TIMESTAMP", "text": "VARCHAR", "string": "VARCHAR"}
SOURCE = "shop_source"  # the attached PostgreSQL database


class ShopSnapshotError(RuntimeError):
    """The bulk copy failed; nothing was changed in the warehouse. The message has no password."""


def postgres_extension_path() -> str:
    """The postgres extension from the `duckdb-extension-postgres-scanner` wheel (loads offline)."""
    import duckdb_extension_postgres_scanner

    folder = Path(duckdb_extension_postgres_scanner.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = folder / "postgres_scanner.duckdb_extension"
    if not path.is_file():
        raise FileNotFoundError(f"no postgres extension for DuckDB {duckdb.__version__} at {path}")
    return str(path)


def libpq_environment(url: str) -> dict[str, str]:
    """The URL as libpq's PG* variables: ATTACH takes no bound parameter, and SQL text could echo the password."""
    parts = urlsplit(url)
    variables = {
        "PGHOST": parts.hostname or "localhost",
        "PGPORT": str(parts.port or 5432),
        "PGDATABASE": parts.path.lstrip("/"),
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
    }
    if sslmode := parse_qs(parts.query).get("sslmode"):
        variables["PGSSLMODE"] = sslmode[0]
    return variables


def _duckdb_type(declared: str) -> str:
    return _DECLARED.get(declared.strip().lower(), declared.strip().upper())


def _declared_columns(config: Path) -> dict[str, dict[str, str]]:
    """Per stream, the `columns:` of replication.yaml as DuckDB types."""
    streams = yaml.safe_load(config.read_text())["streams"]
    return {
        stream: {column: _duckdb_type(str(kind)) for column, kind in ((own or {}).get("columns") or {}).items()}
        for stream, own in streams.items()
    }


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy_table(con: duckdb.DuckDBPyConnection, plan: StreamPlan, declared: dict[str, str]) -> int:
    """Replace the rows of the stream's raw table by the source table's (creating it, or adding new columns)."""
    source_schema, source_table = plan.stream.split(".")
    target_schema, target_table = plan.table.split(".")
    columns = con.execute(
        "select column_name from duckdb_columns() where database_name = ? and schema_name = ? and table_name = ?"
        " order by column_index",
        [SOURCE, source_schema, source_table],
    ).fetchall()
    if not columns:
        raise ShopSnapshotError(f"{plan.stream} -> {plan.table}: the source has no table {plan.stream}")
    selects = []
    for (column,) in columns:
        kind = declared.get(column.lower(), "VARCHAR")  # Sling lands undeclared (text) columns as VARCHAR
        selects.append(f"cast({_quote(column)} as {kind}) as {_quote(column.lower())}")
    # one value for every row, like Sling's load timestamp (current_timestamp is fixed within the transaction)
    selects.append("current_timestamp as _sling_loaded_at")
    select = f"select {', '.join(selects)} from {SOURCE}.{_quote(source_schema)}.{_quote(source_table)}"
    target = f"{_quote(target_schema)}.{_quote(target_table)}"
    existing = con.execute(
        "select column_name from duckdb_columns() where database_name = current_database() and schema_name = ?"
        " and table_name = ?",
        [target_schema, target_table],
    ).fetchall()
    if not existing:
        con.execute(f"create table {target} as {select}")
    else:  # keep the table and its columns (a column dropped in PostgreSQL stays, NULL), add the new ones
        have = {name for (name,) in existing}
        for (column,) in columns:
            if column.lower() not in have:
                kind = declared.get(column.lower(), "VARCHAR")
                con.execute(f"alter table {target} add column {_quote(column.lower())} {kind}")
        con.execute(f"delete from {target}")
        con.execute(f"insert into {target} by name {select}")
    return con.execute(f"select count(*) from {target}").fetchone()[0]


def raw_tables_present(duckdb_path: Path, plans: list[StreamPlan]) -> set[str]:
    """Which of the plans' raw tables exist in the DuckDB file (none when there is no file)."""
    if not Path(duckdb_path).is_file():
        return set()
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        found = con.execute("select table_schema || '.' || table_name from information_schema.tables").fetchall()
    return {name.lower() for (name,) in found} & {plan.table for plan in plans}


def snapshot_shop(
    source_url: str,
    duckdb_path: Path,
    streams: list[str] | None = None,
    config: Path = REPLICATION_CONFIG,
    memory_limit: str = SLING_DUCKDB_MEMORY_LIMIT,
) -> dict[str, Any]:
    """Copy whole shop tables (`streams` by target table name, e.g. `['orders']`; default every stream) into the
    DuckDB file in one transaction: all of them land, or none changes. Returns rows per target table."""
    plans = stream_plans(config)
    chosen = [plans[name] for name in (streams or list(plans))]
    declared = _declared_columns(config)
    duckdb_path = Path(duckdb_path)
    spill = duckdb_path.parent / ".snapshot_spill"
    loaded: dict[str, Any] = {}
    with (
        scoped_environ(libpq_environment(source_url)),
        duckdb.connect(str(duckdb_path), config={"memory_limit": memory_limit, "temp_directory": str(spill)}) as con,
    ):
        try:
            con.execute(f"load '{postgres_extension_path()}'")
            con.execute(f"attach '' as {SOURCE} (type postgres, read_only)")  # libpq reads the PG* variables
            con.execute("begin")
            for plan in chosen:
                con.execute(f"create schema if not exists {_quote(plan.table.split('.')[0])}")
                loaded[plan.table] = _copy_table(con, plan, declared.get(plan.stream, {}))
            con.execute("commit")
        except (duckdb.Error, ShopSnapshotError) as error:
            raise ShopSnapshotError(
                f"bulk snapshot from {describe(source_url)} into {duckdb_path} failed, nothing was changed: "
                f"{scrub(str(error), source_url)}"
            ) from None
    return loaded
