"""Run the shop replication without Dagster (from a shell or a test): `replicate_shop(url, duckdb_path)`.

Dagster runs the same `replication.yaml` through dagster-sling (orchestration/defs/shop/assets.py); both read what
Sling did from its log (`rows_loaded`) and what each stream does from the config (`stream_plans`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import yaml

import extract  # noqa: F401  (points SLING_BINARY / DUCKDB_PATH at the bundled binaries before `sling` loads)
from extract.shop.connection import describe, scrub
from extract.shop.stall import SlingStalled, retry_once_on_stall
from extract.tooling import install_duckdb_extensions, owner_environ

REPLICATION_CONFIG = Path(__file__).with_name("replication.yaml")

# Sling's summary line per stream, e.g. `inserted 3 rows into "raw_shop"."orders" in 1 secs [2 r/s]`
_INSERTED = re.compile(r'inserted (\d+) rows into "?(\w+)"?\."?(\w+)"?')
# in Sling's closing error report, one section per failed stream: `----- data.orders -----`, then its error
_FAILED_STREAM = re.compile(r"^-{3,} (\S+) -{3,}$", re.MULTILINE)
# DuckDB's error when a value does not cast to the stream's declared `columns:` type
_NOT_CONVERTED = re.compile(
    r"""Error when converting column "([^"]+)"\. Could not convert string "(.*?)" to '([^']+)'"""
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# Memory bounds for what Sling starts (docs/shop.md "Memory"): the DuckDB CLI it writes through gets a memory limit
# and a spill folder, and Sling itself (Go) a soft heap limit; together they stay well under 1 GiB.
SLING_DUCKDB_MEMORY_LIMIT = "512MB"
SLING_GO_MEMORY_LIMIT = "256MiB"  # GOMEMLIMIT
_WRAPPER = """#!/bin/sh
# written by extract/shop/replicate.py: Sling's DuckDB CLI, with a memory limit and a spill folder
exec {cli} -cmd {settings} "$@"
"""


def sling_environment(work_dir: Path) -> dict[str, str]:
    """Variables for a Sling run whose processes stay bounded: `DUCKDB_PATH` is a wrapper (in `work_dir`) that
    starts the bundled DuckDB CLI with `SET memory_limit` and `SET temp_directory` before Sling's statements (the CLI
    reads no profile: a `.duckdbrc` breaks Sling's reading of its output), and `GOMEMLIMIT` bounds Sling's heap.
    `ELT_SLING_DUCKDB_MEMORY_LIMIT` overrides the CLI's limit; a GOMEMLIMIT already set is kept. Sling also gets a
    home of its own (`SLING_HOME_DIR`, unless set): its state database in ~/.sling is shared by every Sling on the
    machine, and runs were seen hanging on it while other Sling processes ran. `ELT_OWNER_PROCESS` names this process
    as Sling's owner (extract.tooling.owner_environ)."""
    environment = {
        "GOMEMLIMIT": os.environ.get("GOMEMLIMIT", SLING_GO_MEMORY_LIMIT),
        "SLING_HOME_DIR": os.environ.get("SLING_HOME_DIR", str(work_dir / "home")),
        **owner_environ(),
    }
    cli = os.environ.get("DUCKDB_PATH")  # the bundled CLI (extract.tooling)
    if not cli or Path(cli).parent == work_dir:
        return environment
    work_dir.mkdir(parents=True, exist_ok=True)
    limit = os.environ.get("ELT_SLING_DUCKDB_MEMORY_LIMIT", SLING_DUCKDB_MEMORY_LIMIT)
    spill = work_dir / "spill"
    settings = f"SET memory_limit = '{limit}'; SET temp_directory = '{spill}';"
    wrapper = work_dir / "duckdb"
    wrapper.write_text(_WRAPPER.format(cli=shlex.quote(cli), settings=shlex.quote(settings)))
    wrapper.chmod(0o755)
    return {**environment, "DUCKDB_PATH": str(wrapper)}


class ShopReplicationError(RuntimeError):
    """Sling failed; the message carries its log with the password removed."""


@dataclass(frozen=True)
class StreamPlan:
    """What one stream of the replication does: where it lands and how it loads."""

    stream: str  # source table, `data.orders`
    table: str  # target table, `raw_shop.orders`
    mode: str  # `full-refresh` or `incremental`
    update_key: str | None = None
    primary_key: tuple[str, ...] = ()
    sql: str | None = None  # the stream's own select (`{incremental_value}` is the high-water mark), if it has one


def stream_plans(config: Path = REPLICATION_CONFIG) -> dict[str, StreamPlan]:
    """Each stream's effective settings (its own over `defaults`), keyed by target table name (`orders`)."""
    replication = yaml.safe_load(config.read_text())
    defaults = replication.get("defaults") or {}
    plans = {}
    for stream, own in replication["streams"].items():
        settings = {**defaults, **(own or {})}
        schema, _, table = stream.rpartition(".")
        target = settings["object"].format(stream_schema=schema, stream_table=table).lower()
        primary_key = settings.get("primary_key") or ()
        plans[target.split(".")[-1]] = StreamPlan(
            stream=stream,
            table=target,
            mode=settings.get("mode", "full-refresh"),
            update_key=settings.get("update_key"),
            primary_key=(primary_key,) if isinstance(primary_key, str) else tuple(primary_key),
            sql=settings.get("sql"),
        )
    return plans


def window_sql(plan: StreamPlan, high_water_mark: Any) -> str:
    """The select Sling runs in PostgreSQL for an incremental stream that continues from `high_water_mark`: the
    stream's own `sql` with `{incremental_value}` rendered as Sling renders it (a quoted literal), else Sling's
    default `select * .. where <update_key> >= <mark>` (this replication reads at or after the mark)."""
    literal = "null" if high_water_mark is None else "'" + str(high_water_mark).replace("'", "''") + "'"
    if plan.sql:
        return plan.sql.replace("{incremental_value}", literal)
    if high_water_mark is None:
        return f"select * from {plan.stream}"
    return f"select * from {plan.stream} where {plan.update_key} >= {literal}"


def unchanged_streams(
    url: str, plans: Iterable[StreamPlan], high_water_marks: Mapping[str, Any], raw_query: Callable[..., Any]
) -> set[str]:
    """The incremental streams with nothing new in PostgreSQL, by target table: Sling would re-read only rows that
    the raw table already holds, so it need not start (it costs ~5 s of fixed cost a run; the high-water mark is
    the raw table's own maximum, no state is kept that a skipped run would miss).

    `high_water_marks` holds the raw tables that exist (None: empty). A stream counts as unchanged when its read
    returns no row, or (with a mark) when every row it returns has `update_key` equal to the mark (none past it)
    and those rows are as many as the raw table's rows at the mark, with the same sum of ids where the primary key
    is one number column: a row committed later with the mark's timestamp, or one updated since, makes Sling run.
    A column added in PostgreSQL (one the raw table lacks) makes Sling run too. A column dropped there does not
    on its own: the raw table keeps it (Sling never drops a column), so comparing for equality would make every
    later run with nothing new start Sling.
    `raw_query(sql, params)` returns the rows of a query on the warehouse. Any error here means "run Sling": the
    check only ever skips work."""
    unchanged: set[str] = set()
    candidates = [
        plan for plan in plans if plan.mode == "incremental" and plan.update_key and plan.table in high_water_marks
    ]
    if not candidates:
        return unchanged
    with psycopg.connect(url, connect_timeout=10) as con:
        for plan in candidates:
            mark = high_water_marks[plan.table]
            key = plan.primary_key[0] if len(plan.primary_key) == 1 else None
            id_sum = f"coalesce(sum({key}::numeric), 0)" if key else "0"
            try:
                window = window_sql(plan, mark)
                # a column added in PostgreSQL: Sling runs, and its schema drift handling adds it
                source_columns = {column.name.lower() for column in con.execute(f"{window} limit 0").description}
                raw_columns = {
                    name.lower()
                    for (name,) in raw_query(
                        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                        plan.table.split("."),
                    )
                }
                if not source_columns <= raw_columns:
                    continue
                count, ids, newest = con.execute(
                    f"select count(*), {id_sum}, max({plan.update_key}) from ({window}) as window_rows"
                ).fetchone()
                if count == 0:
                    unchanged.add(plan.table)
                    continue
                if mark is None or newest != mark:
                    continue
                raw_id_sum = f"coalesce(sum(cast({key} as hugeint)), 0)" if key else "0"
                ((raw_count, raw_ids),) = raw_query(
                    f"select count(*), {raw_id_sum} from {plan.table} where {plan.update_key} = ?", [mark]
                )
            except (psycopg.Error, duckdb.Error):
                con.rollback()
                continue
            if count == raw_count and int(ids) == int(raw_ids):
                unchanged.add(plan.table)
    return unchanged


def rows_loaded(sling_log: str) -> dict[str, int]:
    """Rows Sling wrote in this run per target table (`raw_shop.orders`), from its summary lines."""
    return {f"{schema}.{table}".lower(): int(rows) for rows, schema, table in _INSERTED.findall(sling_log)}


def failed_streams(sling_log: str, config: Path = REPLICATION_CONFIG) -> dict[str, str]:
    """What failed, per stream of Sling's closing error report, in one line each: for a value that does not cast to
    the declared type, the target table, the column and the value (`raw_shop.orders: column quantity ...`)."""
    log = _ANSI.sub("", sling_log)
    sections = _FAILED_STREAM.split(log)
    tables = {plan.stream: plan.table for plan in stream_plans(config).values()}
    failures = {}
    for stream, text in zip(sections[1::2], sections[2::2], strict=True):
        table = tables.get(stream, stream)
        if converted := _NOT_CONVERTED.search(text):
            column, value, declared = converted.groups()
            failures[stream] = (
                f"{stream} -> {table}: column `{column}` holds {value!r}, which does not convert to {declared}, its "
                f"declared type (extract/shop/replication.yaml `columns:`); was `{column}` retyped in PostgreSQL? "
                f"{table} keeps its previous content"
            )
        else:
            first = next((line.strip(" ~") for line in text.splitlines() if line.strip(" ~")), "failed")
            failures[stream] = f"{stream} -> {table}: {first[:300]}; {table} keeps its previous content"
    return failures


def bulk_log_lines(loaded: dict[str, int]) -> str:
    """What the bulk snapshot wrote, in Sling's summary format, so `rows_loaded` reads it like Sling's own lines."""
    return "".join(
        f'\nbulk snapshot (DuckDB postgres extension): inserted {rows} rows into "{table.split(".")[0]}".'
        f'"{table.split(".")[1]}"'
        for table, rows in loaded.items()
    )


def replicate_shop(
    source_url: str, duckdb_path: Path, config: Path = REPLICATION_CONFIG, bulk_first_load: bool = True
) -> str:
    """Copy the shop tables into `raw_shop.*` of a local DuckDB file; returns Sling's log (password removed).

    With `bulk_first_load`, a table that is not in the warehouse yet is copied whole by the bulk snapshot
    (extract/shop/snapshot.py, ~10x Sling's speed) and Sling runs the other streams (`--streams`); Sling's next run
    continues from the snapshot's high-water mark."""
    import sling

    install_duckdb_extensions()
    loaded: dict[str, int] = {}
    if bulk_first_load:
        from extract.shop.snapshot import raw_tables_present, snapshot_shop

        plans = stream_plans(config)
        present = raw_tables_present(duckdb_path, list(plans.values()))
        if missing := [name for name, plan in plans.items() if plan.table not in present]:
            loaded = snapshot_shop(source_url, duckdb_path, missing, config)
        rest = [plan.stream for plan in plans.values() if plan.table not in loaded]
        if not rest:
            return bulk_log_lines(loaded).lstrip("\n")
        streams = ["--streams", ",".join(rest)] if loaded else []
    else:
        streams = []
    env = {
        **os.environ,
        **sling_environment(duckdb_path.parent / ".sling"),
        "SHOP": source_url,  # Sling resolves connection names from environment variables
        "WAREHOUSE": json.dumps({"type": "duckdb", "instance": str(duckdb_path)}),
    }
    try:  # Sling can hang for good: stopped when it makes no progress, and run once more (as in the asset)
        result = retry_once_on_stall(
            lambda: subprocess.run(
                [sling.SLING_BIN, "run", "-r", str(config), *streams],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
            )
        )
    except SlingStalled as stall:
        raise ShopReplicationError(
            f"Sling replication from {describe(source_url)} failed: {stall} (twice in a row)"
        ) from None
    log = scrub(result.stdout + result.stderr, source_url)
    if result.returncode != 0:
        failures = "; ".join(failed_streams(log, config).values())
        raise ShopReplicationError(
            f"Sling replication from {describe(source_url)} failed: {failures or 'see its log'}\n{log[-8000:]}"
        )
    return log + bulk_log_lines(loaded)
