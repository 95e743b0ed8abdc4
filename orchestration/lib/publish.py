"""Write-Audit-Publish for prod: dbt builds into an audit area, tests run there, and readers see it only after.

Every model has three versioned schemas, `<schema>__slot_a|b|c` (macros/generate_schema_name.sql). Readers query
`<schema>.<model>`, a view onto the slot that is published (`current`); the slot published before it (`previous`)
is kept for `elt prod rollback`, and a prod run builds into the third one, the audit slot. An incremental model's
audit slot still holds that model's build of two publishes ago, so its build merges only the rows loaded since:
the cost grows with new rows, not with the table.

- audit: `start_audit` picks the slots (the run's models into their audit slot, every other model read where it
  is published or audited) and forgets earlier audits of the models the run rebuilds; dbt builds and tests; only a
  build whose every test passed is recorded (`record_audit`, with its manifest).
- publish: `publish` swaps every audited model's reader view onto its audit slot, moves the slots (audit ->
  current -> previous), logs the publish and installs the manifest for PR branches, all in one transaction:
  a reader sees all-old or all-new, the cost is a view per model whatever the data size (zero-copy on
  MotherDuck too: the SQL is the same, run on `md:<prod>`), and a process killed before COMMIT changes nothing.
- rollback: `rollback` swaps the models of the last publish back to their previous slot, in one transaction.

The SQL is built by pure functions (`publish_sql`, `rollback_sql`) so it can be read and tested without a warehouse.
Views name no catalog: a clone of prod (`CREATE DATABASE .. FROM`, or a copied file) resolves them in itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from orchestration.lib.meta import META_SCHEMA, PROD_MANIFEST_TABLE, literal, quote

SLOTS = ("a", "b", "c")
MODELS_TABLE = "wap_models"  # per model: the published slot and the one before it
AUDIT_TABLE = "wap_audit"  # per model: the slot that passed its audit and waits to be published
AUDIT_MANIFEST_TABLE = "wap_audit_manifest"  # the manifest of that audit
LOG_TABLE = "wap_publishes"  # one row per publish or rollback, with the manifest that describes the result


class PublishError(RuntimeError):
    """Nothing to roll back to, or an audit that is not newer than what is published."""


@dataclass(frozen=True)
class Model:
    name: str
    schema: str  # the reader-facing schema (staging, intermediate, marts)
    alias: str


@dataclass(frozen=True)
class Published:
    model: Model
    current: str
    previous: str | None


@dataclass(frozen=True)
class Audited:
    model: Model
    slot: str


def slot_schema(schema: str, slot: str) -> str:
    """`marts`, `b` -> `marts__slot_b`: the same spelling as macros/generate_schema_name.sql."""
    if slot not in SLOTS:
        raise ValueError(f"slot {slot!r} is not one of {', '.join(SLOTS)}")
    return f"{schema}__slot_{slot}"


def reader(model: Model) -> str:
    return f"{quote(model.schema)}.{quote(model.alias)}"


def in_slot(model: Model, slot: str) -> str:
    return f"{quote(slot_schema(model.schema, slot))}.{quote(model.alias)}"


def audit_slot(published: Published | None) -> str:
    """The slot a run builds the model into: neither the published one nor the one kept for rollback."""
    taken = {published.current, published.previous} if published else set()
    return next(slot for slot in SLOTS if slot not in taken)


def manifest_models(manifest: Mapping[str, Any]) -> list[Model]:
    """Every model of a manifest parsed without `wap_slots` (its schemas are the reader-facing ones)."""
    return [
        Model(node["name"], node["schema"], node.get("alias") or node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node.get("config", {}).get("materialized") != "ephemeral"
    ]


def state_sql() -> list[str]:
    meta = quote(META_SCHEMA)
    model = "model varchar, schema_name varchar, alias varchar"
    return [
        f"create schema if not exists {meta}",
        f"create table if not exists {meta}.{MODELS_TABLE} ({model}, current_slot varchar, previous_slot varchar, "
        "published_at timestamptz)",
        f"create table if not exists {meta}.{AUDIT_TABLE} ({model}, slot varchar, run_id varchar, "
        "audited_at timestamptz)",
        f"create table if not exists {meta}.{AUDIT_MANIFEST_TABLE} (manifest varchar, run_id varchar)",
        f"create table if not exists {meta}.{LOG_TABLE} (publish_id integer, kind varchar, run_id varchar, "
        "published_at timestamptz, models varchar[], manifest varchar)",
    ]


def ensure_state(con: duckdb.DuckDBPyConnection) -> None:
    for statement in state_sql():
        con.execute(statement)


def read_published(con: duckdb.DuckDBPyConnection) -> dict[str, Published]:
    rows = con.execute(
        f"select model, schema_name, alias, current_slot, previous_slot from {META_SCHEMA}.{MODELS_TABLE}"
    ).fetchall()
    return {
        name: Published(Model(name, schema, alias), current, previous)
        for name, schema, alias, current, previous in rows
    }


def read_audited(con: duckdb.DuckDBPyConnection) -> dict[str, Audited]:
    rows = con.execute(f"select model, schema_name, alias, slot from {META_SCHEMA}.{AUDIT_TABLE}").fetchall()
    return {name: Audited(Model(name, schema, alias), slot) for name, schema, alias, slot in rows}


def plan_slots(
    models: Iterable[Model], selected: set[str], published: Mapping[str, Published], audited: Mapping[str, Audited]
) -> dict[str, str]:
    """`wap_slots` for dbt: a model the run builds goes to its audit slot; any other model is read where it waits
    for publish (audited earlier) or where it is published. A model in neither builds in place (never published)."""
    slots = {}
    for model in models:
        if model.name in selected:
            slots[model.name] = audit_slot(published.get(model.name))
        elif model.name in audited:
            slots[model.name] = audited[model.name].slot
        elif model.name in published:
            slots[model.name] = published[model.name].current
    return slots


def start_audit(con: duckdb.DuckDBPyConnection, models: list[Model], selected: set[str]) -> dict[str, str]:
    """Before a prod dbt build: the slots it builds into and reads from. Earlier audits of the models this run
    rebuilds are forgotten first, so a build that fails or is killed can never be published."""
    ensure_state(con)
    slots = plan_slots(models, selected, read_published(con), read_audited(con))
    names = [model.name for model in models if model.name in selected]
    if names:  # the manifest of an earlier audit stays: it still describes the audits that wait
        con.execute(f"delete from {META_SCHEMA}.{AUDIT_TABLE} where list_contains(?, model)", [names])
    return slots


def record_audit(
    con: duckdb.DuckDBPyConnection, models: list[Model], slots: Mapping[str, str], manifest: str, run_id: str
) -> None:
    """After a prod dbt build whose every test passed: its models wait in their audit slots for `publish`."""
    con.execute("begin transaction")
    for model in models:
        con.execute(f"delete from {META_SCHEMA}.{AUDIT_TABLE} where model = ?", [model.name])
        con.execute(
            f"insert into {META_SCHEMA}.{AUDIT_TABLE} values (?, ?, ?, ?, ?, now())",
            [model.name, model.schema, model.alias, slots[model.name], run_id],
        )
    con.execute(f"delete from {META_SCHEMA}.{AUDIT_MANIFEST_TABLE}")
    con.execute(f"insert into {META_SCHEMA}.{AUDIT_MANIFEST_TABLE} values (?, ?)", [manifest, run_id])
    con.execute("commit")


def _point_reader(model: Model, slot: str, reader_kind: str | None) -> list[str]:
    """Reader view onto a slot; a table left in its place (a build without WAP, before it existed) is dropped."""
    drop = [f"drop table {reader(model)}"] if reader_kind == "BASE TABLE" else []
    return [*drop, f"create or replace view {reader(model)} as select * from {in_slot(model, slot)}"]


def _set_slots(model: Model, current: str, previous: str | None) -> list[str]:
    table = f"{META_SCHEMA}.{MODELS_TABLE}"
    return [
        f"delete from {table} where model = {literal(model.name)}",
        f"insert into {table} values ({literal(model.name)}, {literal(model.schema)}, {literal(model.alias)}, "
        f"{literal(current)}, {literal(previous) if previous else 'null'}, now())",
    ]


def _log(publish_id: int, kind: str, run_id: str, models: Iterable[Model], manifest_sql: str) -> list[str]:
    names = ", ".join(literal(model.name) for model in models)
    log = f"{META_SCHEMA}.{LOG_TABLE}"
    prod = f"{META_SCHEMA}.{PROD_MANIFEST_TABLE}"
    logged = f"select manifest from {log} where publish_id = {publish_id} and manifest is not null"
    return [
        f"insert into {log} select {publish_id}, {literal(kind)}, {literal(run_id)}, now(), [{names}]::varchar[], "
        f"({manifest_sql})",
        f"update {log} set manifest = null where publish_id < {publish_id - 1}",  # rollback needs the one before
        f"create table if not exists {prod} (manifest varchar, published_at timestamptz)",
        f"delete from {prod} where exists ({logged})",
        f"insert into {prod} select manifest, now()::timestamptz from ({logged})",
    ]


def publish_sql(
    audited: Iterable[Audited],
    published: Mapping[str, Published],
    reader_kinds: Mapping[tuple[str, str], str],
    publish_id: int,
    run_id: str,
) -> list[str]:
    """One transaction: every audited model's reader view onto its audit slot, the slots moved on, the publish
    logged with the audit's manifest, which becomes prod's manifest (for PR branches), and the audit cleared."""
    audited = sorted(audited, key=lambda item: item.model.name)
    statements = ["begin transaction"]
    for schema in sorted({item.model.schema for item in audited}):
        statements.append(f"create schema if not exists {quote(schema)}")
    for item in audited:
        before = published.get(item.model.name)
        if before and item.slot in (before.current, before.previous):
            raise PublishError(
                f"model {item.model.name}: the audited slot {item.slot} is the published or the kept one; "
                "run the prod build again"
            )
        statements += _point_reader(item.model, item.slot, reader_kinds.get((item.model.schema, item.model.alias)))
        statements += _set_slots(item.model, item.slot, before.current if before else None)
    statements += _log(
        publish_id,
        "publish",
        run_id,
        [item.model for item in audited],
        f"select manifest from {META_SCHEMA}.{AUDIT_MANIFEST_TABLE} limit 1",
    )
    statements += [f"delete from {META_SCHEMA}.{AUDIT_TABLE}", f"delete from {META_SCHEMA}.{AUDIT_MANIFEST_TABLE}"]
    return [*statements, "commit"]


def rollback_sql(
    last_models: Iterable[str], published: Mapping[str, Published], publish_id: int, last_publish_id: int
) -> list[str]:
    """One transaction: the models of the last publish back onto their previous slot (which becomes the kept
    one, so a second rollback undoes the first), prod's manifest back to the one before, audits waiting dropped."""
    names = sorted(last_models)
    missing = [name for name in names if name not in published or published[name].previous is None]
    if missing:
        raise PublishError(
            f"nothing to roll back to for {', '.join(missing)}: publish {last_publish_id} was their first"
        )
    statements = ["begin transaction"]
    for name in names:
        state = published[name]
        statements += _point_reader(state.model, state.previous, "VIEW")
        statements += _set_slots(state.model, state.previous, state.current)
    statements += _log(
        publish_id,
        "rollback",
        "",
        [published[name].model for name in names],
        f"select manifest from {META_SCHEMA}.{LOG_TABLE} where publish_id < {last_publish_id} "
        "and manifest is not null order by publish_id desc limit 1",
    )
    statements += [f"delete from {META_SCHEMA}.{AUDIT_TABLE}", f"delete from {META_SCHEMA}.{AUDIT_MANIFEST_TABLE}"]
    return [*statements, "commit"]


def _reader_kinds(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    rows = con.execute(
        "select table_schema, table_name, table_type from information_schema.tables "
        "where table_catalog = current_database()"
    ).fetchall()
    return {(schema, name): kind for schema, name, kind in rows}


def _last_publish(con: duckdb.DuckDBPyConnection) -> tuple[int, list[str]] | None:
    row = con.execute(
        f"select publish_id, models from {META_SCHEMA}.{LOG_TABLE} order by publish_id desc limit 1"
    ).fetchone()
    return (row[0], list(row[1])) if row else None


def _run(con: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    try:
        for statement in statements:
            con.execute(statement)
    except BaseException:
        con.execute("rollback")  # nothing of it is visible; re-raised
        raise


@dataclass(frozen=True)
class PublishResult:
    publish_id: int | None  # None: nothing was audited
    models: list[str]


def publish(con: duckdb.DuckDBPyConnection, run_id: str) -> PublishResult:
    """Publish every audited model at once; nothing happens when no audit waits."""
    ensure_state(con)
    audited = read_audited(con)
    if not audited:
        return PublishResult(None, [])
    last = _last_publish(con)
    publish_id = (last[0] if last else 0) + 1
    _run(con, publish_sql(audited.values(), read_published(con), _reader_kinds(con), publish_id, run_id))
    return PublishResult(publish_id, sorted(audited))


def rollback(con: duckdb.DuckDBPyConnection) -> PublishResult:
    """Restore what was published before the last publish (or undo the last rollback)."""
    ensure_state(con)
    last = _last_publish(con)
    if last is None:
        raise PublishError("nothing to roll back: prod has never published (elt_meta.wap_publishes is empty)")
    publish_id, models = last
    _run(con, rollback_sql(models, read_published(con), publish_id + 1, publish_id))
    return PublishResult(publish_id + 1, sorted(models))


def audit_failures(run_results: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """One line per failing test (with the model it tests) or model that did not build, from dbt's artifacts."""
    nodes = manifest.get("nodes", {})
    lines = []
    for result in run_results.get("results", []):
        if result["status"] not in ("fail", "error"):
            continue
        node = nodes.get(result["unique_id"], {})
        if node.get("resource_type") == "test":
            tested = node.get("attached_node") or next(iter(node.get("depends_on", {}).get("nodes", [])), "")
            where = tested.split(".")[-1] if tested else "?"
            count = f", {result['failures']} failing rows" if result.get("failures") else ""
            lines.append(f"test {node.get('name', result['unique_id'])} on {where}: {result['status']}{count}")
        else:
            message = (result.get("message") or "").splitlines()[0] if result.get("message") else ""
            lines.append(
                f"{node.get('resource_type', 'node')} {node.get('name', result['unique_id'])}: "
                f"{result['status']} {message}".rstrip()
            )
    return lines
