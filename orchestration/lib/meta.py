"""The `elt_meta` schema every warehouse carries: prod's dbt manifest (published after each prod build) and the
marker a PR clone gets when it is made. Prod writes its state here; the branch slice reads it from its clone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb

from orchestration.lib import motherduck
from orchestration.lib.environment import Environment, EnvironmentConfigError, open_for_write

META_SCHEMA = "elt_meta"
PROD_MANIFEST_TABLE = "dbt_prod_manifest"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_exists(con: duckdb.DuckDBPyConnection, catalog: str, schema: str, table: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_catalog = ? and table_schema = ? "
        "and table_name = ?",
        [catalog, schema, table],
    ).fetchone()[0]
    return found > 0


def publish_prod_state(env: Environment, manifest_path: Path) -> None:
    """After a prod dbt build: store its manifest in the prod warehouse, where every later clone finds it."""
    if env.name != "prod":
        raise EnvironmentConfigError(f"only prod publishes dbt state (this is {env.name}): run with ELT_ENV=prod")
    manifest = manifest_path.read_text()
    json.loads(manifest)  # a truncated file must not become the state every PR is compared against
    with duckdb.connect(open_for_write(env, env.warehouse)) as con:
        con.execute(f"create schema if not exists {META_SCHEMA}")
        con.execute(
            f"create or replace table {META_SCHEMA}.{PROD_MANIFEST_TABLE} as "
            "select ?::varchar as manifest, now()::timestamptz as published_at",
            [manifest],
        )


def read_prod_state(location: str, state_dir: Path) -> Path | None:
    """Write the manifest a warehouse carries to `state_dir/manifest.json`; None when prod never published one."""
    with duckdb.connect(location, read_only=not motherduck.is_motherduck(location)) as con:
        catalog = con.execute("select current_database()").fetchone()[0]
        if not table_exists(con, catalog, META_SCHEMA, PROD_MANIFEST_TABLE):
            return None
        manifest = con.execute(f"select manifest from {quote(catalog)}.{META_SCHEMA}.{PROD_MANIFEST_TABLE}").fetchone()
    if not manifest:
        return None
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    (state_dir / "manifest.json").write_text(manifest[0])
    return state_dir
