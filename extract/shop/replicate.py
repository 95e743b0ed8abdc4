"""Run the shop replication without Dagster (from a shell or a test): `replicate_shop(url, duckdb_path)`.

Dagster runs the same `replication.yaml` through dagster-sling (orchestration/defs/shop/assets.py); both read what
Sling did from its log (`rows_loaded`) and what each stream does from the config (`stream_plans`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

import extract  # noqa: F401  (points SLING_BINARY / DUCKDB_PATH at the bundled binaries before `sling` loads)
from extract.shop.connection import describe, scrub
from extract.tooling import install_duckdb_extensions

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
        )
    return plans


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


def replicate_shop(source_url: str, duckdb_path: Path, config: Path = REPLICATION_CONFIG) -> str:
    """Copy the shop tables into `raw_shop.*` of a local DuckDB file; returns Sling's log (password removed)."""
    import sling

    install_duckdb_extensions()
    env = {
        **os.environ,
        "SHOP": source_url,  # Sling resolves connection names from environment variables
        "WAREHOUSE": json.dumps({"type": "duckdb", "instance": str(duckdb_path)}),
    }
    result = subprocess.run(
        [sling.SLING_BIN, "run", "-r", str(config)], env=env, capture_output=True, text=True, timeout=3600
    )
    log = scrub(result.stdout + result.stderr, source_url)
    if result.returncode != 0:
        failures = "; ".join(failed_streams(log, config).values())
        raise ShopReplicationError(
            f"Sling replication from {describe(source_url)} failed: {failures or 'see its log'}\n{log[-8000:]}"
        )
    return log
