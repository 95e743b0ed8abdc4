"""`elt branch diff`: what a PR does to the data. Every model the branch build selects (`state:modified+` against
prod's manifest, the same selection as `build.py`), plus models added or removed, compared between prod and the
branch clone: schema, row counts, and rows added, removed and changed by primary key.

It runs inside DuckDB, prod and the clone in one session (prod attached READ_ONLY beside the clone; on MotherDuck
both databases of the workspace), as set-based SQL: one full outer join on the key per model, `IS DISTINCT FROM` per
column, counts by aggregates; the differing keys go to a scratch table (in-memory temp locally, the clone's
`elt_meta` on MotherDuck, so no rows leave the warehouse), from which a few sample rows are read. DuckDB's memory is
capped and spills to a temp folder, so a 10M-row model diffs in well under 1 GiB.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from orchestration.lib import motherduck
from orchestration.lib.environment import DBT_PROJECT_DIR, Environment, EnvironmentConfigError
from orchestration.lib.meta import META_SCHEMA, literal, quote
from orchestration.lib.publish import SLOTS, slot_schema

MARKER = "<!-- elt-branch-diff -->"  # the workflow finds its PR comment by this line
FAIL_KINDS = ("added-rows", "removed-rows", "changed-rows", "schema")
DEFAULT_MEMORY_LIMIT = "512MB"
DEFAULT_SAMPLES = 5
SCRATCH_TABLE = "elt_branch_diff_keys"
MAX_VALUE_CHARS = 80  # sample values in the Markdown are cut here
MAX_MARKDOWN_CHARS = 60_000  # a GitHub comment holds 65,536


# ---------------------------------------------------------------- where the two databases are


@dataclass(frozen=True)
class Session:
    """One DuckDB session that sees prod and the clone: what to connect to, what to run first, the two catalogs,
    and where the scratch table of differing keys goes."""

    connect_to: str  # ":memory:" (local files are attached) or `md:` (the MotherDuck workspace)
    setup: tuple[str, ...]
    prod_catalog: str
    branch_catalog: str
    scratch: str  # `<catalog>.<schema>` of the scratch table
    temp_dir: Path  # where DuckDB spills beyond its memory limit

    def open(self, connect: Callable[[], duckdb.DuckDBPyConnection] | None = None) -> duckdb.DuckDBPyConnection:
        """A connection with the setup run; `connect` stands in for the MotherDuck workspace in tests."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        con = connect() if connect else duckdb.connect(self.connect_to)
        for statement in self.setup:
            con.execute(statement)
        return con


def session_for(env: Environment, memory_limit: str = DEFAULT_MEMORY_LIMIT, temp_dir: Path | None = None) -> Session:
    """The session of a branch diff: prod read-only beside the clone, DuckDB's memory bounded, spilling to disk."""
    if env.name != "branch" or not env.prod_warehouse:
        raise EnvironmentConfigError(
            "a diff compares a branch clone with prod: run it for a branch (ELT_PROD_DATABASE)"
        )
    temp_dir = temp_dir or env.data_dir / "branches" / (env.branch_id or "branch") / "diff_tmp"
    settings = (
        f"set memory_limit = {literal(memory_limit)}",
        f"set temp_directory = {literal(str(temp_dir))}",
        "set preserve_insertion_order = false",
        "set enable_progress_bar = false",
    )
    if motherduck.is_motherduck(env.prod_warehouse):
        prod, branch = motherduck.database_name(env.prod_warehouse), motherduck.database_name(env.warehouse)
        # both databases are in the workspace; the scratch table lives in the clone, so no row leaves MotherDuck
        return Session(
            motherduck.WORKSPACE,
            (*settings, f"create schema if not exists {quote(branch)}.{META_SCHEMA}"),
            prod,
            branch,
            f"{quote(branch)}.{META_SCHEMA}",
            temp_dir,
        )
    prod_path, branch_path = Path(env.prod_warehouse), Path(env.warehouse)
    if prod_path.stem == branch_path.stem:
        raise EnvironmentConfigError(
            f"prod {prod_path} and the clone {branch_path} have the same file name: DuckDB names a catalog by it, "
            "and views in each name their own; rename prod's file or use another branch id"
        )
    for path, what, fix in (
        (prod_path, "prod warehouse (ELT_PROD_DATABASE)", "build prod first"),
        (branch_path, "branch clone", f"run `elt branch create {env.branch_id}` first"),
    ):
        if not path.exists():
            raise EnvironmentConfigError(f"the {what} {path} does not exist: {fix}")
    # each file under its own name: the views dbt wrote in it name that catalog
    return Session(
        ":memory:",
        (
            *settings,
            f"attach {literal(str(prod_path))} as {quote(prod_path.stem)} (read_only)",
            f"attach {literal(str(branch_path))} as {quote(branch_path.stem)} (read_only)",
        ),
        prod_path.stem,
        branch_path.stem,
        "memory.main",  # the in-memory database of this session, spilling to temp_dir
        temp_dir,
    )


# ---------------------------------------------------------------- one relation against another


@dataclass(frozen=True)
class Relation:
    catalog: str
    schema: str
    name: str

    @property
    def sql(self) -> str:
        return f"{quote(self.catalog)}.{quote(self.schema)}.{quote(self.name)}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class TableDiff:
    """What changed between two versions of one relation. `before`/`after` None: the relation is missing there."""

    rows_before: int | None = None
    rows_after: int | None = None
    columns_added: list[dict[str, str]] = field(default_factory=list)
    columns_removed: list[dict[str, str]] = field(default_factory=list)
    columns_retyped: list[dict[str, str]] = field(default_factory=list)
    method: str = "keyed"  # keyed | whole-row
    key: list[str] | None = None
    note: str = ""  # why a whole-row diff, or anything else the reader should know
    added_rows: int = 0
    removed_rows: int = 0
    changed_rows: int = 0
    changed_columns: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def schema_changed(self) -> bool:
        return bool(self.columns_added or self.columns_removed or self.columns_retyped)

    @property
    def data_changed(self) -> bool:
        return bool(self.added_rows or self.removed_rows or self.changed_rows)


def columns_of(con: duckdb.DuckDBPyConnection, relation: Relation) -> list[tuple[str, str]] | None:
    """(name, type) of a table or view in column order; None when it does not exist."""
    rows = con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = ? and schema_name = ? "
        "and table_name = ? order by column_index",
        [relation.catalog, relation.schema, relation.name],
    ).fetchall()
    return rows or None


def _count(con: duckdb.DuckDBPyConnection, relation: Relation) -> int:
    return con.execute(f"select count(*) from {relation.sql}").fetchone()[0]


def _text(value_sql: str) -> str:
    return f"cast({value_sql} as varchar)"


def diff_tables(
    con: duckdb.DuckDBPyConnection,
    before: Relation | None,
    after: Relation | None,
    key: list[str] | None,
    scratch: str = "memory.main",
    samples: int = DEFAULT_SAMPLES,
    no_key_reason: str = "no key",
) -> TableDiff:
    """Compare two versions of a relation in SQL; only counts and `samples` rows per kind reach Python."""
    result = TableDiff()
    before_columns = columns_of(con, before) if before else None
    after_columns = columns_of(con, after) if after else None
    if before_columns is None or after_columns is None:
        result.method = "none"
        if before_columns is not None:
            result.rows_before = _count(con, before)
        if after_columns is not None:
            result.rows_after = _count(con, after)
        return result

    before_types = {name.lower(): (name, kind) for name, kind in before_columns}
    after_types = {name.lower(): (name, kind) for name, kind in after_columns}
    result.columns_added = [{"name": n, "type": t} for n, t in after_columns if n.lower() not in before_types]
    result.columns_removed = [{"name": n, "type": t} for n, t in before_columns if n.lower() not in after_types]
    result.columns_retyped = [
        {"name": n, "before": before_types[n.lower()][1], "after": t}
        for n, t in after_columns
        if n.lower() in before_types and before_types[n.lower()][1] != t
    ]
    retyped = {column["name"].lower() for column in result.columns_retyped}
    common = [n for n, _ in after_columns if n.lower() in before_types]
    result.rows_before, result.rows_after = _count(con, before), _count(con, after)

    usable_key = [column for column in key or [] if column.lower() in before_types and column.lower() in after_types]
    if key and len(usable_key) == len(key) and not retyped & {column.lower() for column in key}:
        result.method, result.key = "keyed", list(key)
        problem = _keyed_diff(con, before, after, key, common, retyped, scratch, samples, result)
        if problem is None:
            return result
        reason = problem
    elif key:
        reason = f"key ({', '.join(key)}) is not in both versions with one type"
    else:
        reason = no_key_reason
    _reset_counts(result)
    result.method, result.key, result.note = "whole-row", None, f"{reason}: whole-row diff"
    _whole_row_diff(con, before, after, common, retyped, scratch, samples, result)
    return result


def _reset_counts(result: TableDiff) -> None:
    result.added_rows = result.removed_rows = result.changed_rows = 0
    result.changed_columns, result.samples = {}, {}


def _flag(column: str) -> str:
    return quote(f"__changed__{column}")


def _keyed_diff(
    con: duckdb.DuckDBPyConnection,
    before: Relation,
    after: Relation,
    key: list[str],
    common: list[str],
    retyped: set[str],
    scratch: str,
    samples: int,
    result: TableDiff,
) -> str | None:
    """One full outer join on the key; the keys of rows that differ go to the scratch table with a flag per
    column. Returns why the key can't be used (duplicates, nulls) or None."""
    values = [column for column in common if column.lower() not in {k.lower() for k in key}]

    def side(alias: str, column: str) -> str:
        expression = f"{alias}.{quote(column)}"
        return _text(expression) if column.lower() in retyped else expression

    on = " and ".join(f"p.{quote(k)} = b.{quote(k)}" for k in key)
    keys = ", ".join(f"coalesce(p.{quote(k)}, b.{quote(k)}) as {quote(k)}" for k in key)
    flags = "".join(f", {side('p', c)} is distinct from {side('b', c)} as {_flag(c)}" for c in values)
    any_change = " or ".join(_flag(c) for c in values) or "false"
    table = f"{scratch}.{SCRATCH_TABLE}"
    con.execute(
        f"""
        create or replace table {table} as
        select * from (
            select
                case when p.__elt_present is null then 'added' when b.__elt_present is null then 'removed'
                    else 'changed' end as __elt_kind,
                {keys}{flags}
            from (select *, true as __elt_present from {before.sql}) as p
            full outer join (select *, true as __elt_present from {after.sql}) as b on {on}
        )
        where __elt_kind <> 'changed' or {any_change}
        """
    )
    try:
        key_list = ", ".join(quote(k) for k in key)
        nulls = " or ".join(f"{quote(k)} is null" for k in key)
        counts = con.execute(
            f"""
            select
                count(*) filter (where __elt_kind = 'added'),
                count(*) filter (where __elt_kind = 'removed'),
                count(*) filter (where __elt_kind = 'changed'),
                count(*) filter (where {nulls}),
                count(*) filter (where __elt_kind = 'changed') - count(distinct ({key_list}))
                    filter (where __elt_kind = 'changed')
                {"".join(f", count(*) filter (where __elt_kind = 'changed' and {_flag(c)})" for c in values)}
            from {table}
            """
        ).fetchone()
        added, removed, changed, null_keys, repeated, *per_column = counts
        if null_keys or repeated or result.rows_before - removed != result.rows_after - added:
            return f"key ({', '.join(key)}) is not unique or has nulls in prod or the branch"
        result.added_rows, result.removed_rows, result.changed_rows = added, removed, changed
        result.changed_columns = {c: n for c, n in zip(values, per_column, strict=True) if n}
        if samples:
            result.samples = _keyed_samples(con, before, after, key, common, values, table, samples, result)
    finally:
        con.execute(f"drop table if exists {table}")
    return None


def _keyed_samples(
    con: duckdb.DuckDBPyConnection,
    before: Relation,
    after: Relation,
    key: list[str],
    common: list[str],
    values: list[str],
    table: str,
    samples: int,
    result: TableDiff,
) -> dict[str, list[dict[str, Any]]]:
    """A few rows of each kind, read by their keys: changed rows as key + (before, after) of every changed column."""
    on = " and ".join(f"s.{quote(k)} = {{side}}.{quote(k)}" for k in key)
    found: dict[str, list[dict[str, Any]]] = {}
    order = ", ".join(quote(k) for k in key)
    for kind, relation, count in (("added", after, result.added_rows), ("removed", before, result.removed_rows)):
        if not count:
            continue
        as_text = ", ".join(f"{_text('r.' + quote(c))} as {quote(c)}" for c in common)
        rows = con.execute(
            f"select {as_text} "
            f"from (select * from {table} where __elt_kind = '{kind}' order by {order} limit {samples}) as s "
            f"join {relation.sql} as r on {on.format(side='r')} order by {', '.join('r.' + quote(k) for k in key)}"
        )
        names = [column[0] for column in rows.description]
        found[kind] = [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
    if result.changed_rows:
        changed = [c for c in values if c in result.changed_columns]
        select = [f"{_text('s.' + quote(k))} as {quote('key:' + k)}" for k in key]
        for column in changed:
            select += [
                f"s.{_flag(column)} as {quote('flag:' + column)}",
                f"{_text('p.' + quote(column))} as {quote('before:' + column)}",
                f"{_text('b.' + quote(column))} as {quote('after:' + column)}",
            ]
        rows = con.execute(
            f"select {', '.join(select)} "
            f"from (select * from {table} where __elt_kind = 'changed' order by {order} limit {samples}) as s "
            f"join {before.sql} as p on {on.format(side='p')} join {after.sql} as b on {on.format(side='b')} "
            f"order by {', '.join('s.' + quote(k) for k in key)}"
        )
        names = [column[0] for column in rows.description]
        found["changed"] = []
        for row in rows.fetchall():
            record = dict(zip(names, row, strict=True))
            found["changed"].append(
                {
                    "key": {k: record[f"key:{k}"] for k in key},
                    "changes": {
                        c: {"before": record[f"before:{c}"], "after": record[f"after:{c}"]}
                        for c in changed
                        if record[f"flag:{c}"]
                    },
                }
            )
    return found


def _whole_row_diff(
    con: duckdb.DuckDBPyConnection,
    before: Relation,
    after: Relation,
    common: list[str],
    retyped: set[str],
    scratch: str,
    samples: int,
    result: TableDiff,
) -> None:
    """No usable key: rows (over the columns both versions have) that only prod has are removed, rows only the
    branch has are added, counted as multisets (EXCEPT ALL); a changed row shows as one removed plus one added."""
    if not common:
        result.removed_rows, result.added_rows = result.rows_before, result.rows_after
        return
    columns = ", ".join(_text(quote(c)) if c.lower() in retyped else quote(c) for c in common)
    table = f"{scratch}.{SCRATCH_TABLE}"
    con.execute(
        f"""
        create or replace table {table} as
        select 'removed' as __elt_kind, * from (select {columns} from {before.sql} except all
                                                 select {columns} from {after.sql})
        union all
        select 'added' as __elt_kind, * from (select {columns} from {after.sql} except all
                                               select {columns} from {before.sql})
        """
    )
    try:
        result.added_rows, result.removed_rows = con.execute(
            f"select count(*) filter (where __elt_kind = 'added'), count(*) filter (where __elt_kind = 'removed') "
            f"from {table}"
        ).fetchone()
        if samples:
            for kind in ("added", "removed"):
                as_text = ", ".join(f"{_text(quote(c))} as {quote(c)}" for c in common)
                rows = con.execute(
                    f"select {as_text} from {table} where __elt_kind = '{kind}' order by all limit {samples}"
                )
                names = [column[0] for column in rows.description]
                if found := [dict(zip(names, row, strict=True)) for row in rows.fetchall()]:
                    result.samples[kind] = found
    finally:
        con.execute(f"drop table if exists {table}")


# ---------------------------------------------------------------- which models, with which key


def model_key(manifest: dict[str, Any], unique_id: str) -> tuple[list[str] | None, str]:
    """The model's primary key from the manifest and where it came from: a primary_key constraint (model or
    column level), else a column with unique and not_null tests, else a unique_combination_of_columns test, else
    a column with a unique test. None and why when there is none."""
    node = manifest["nodes"][unique_id]
    for constraint in node.get("constraints") or []:
        if constraint.get("type") == "primary_key" and constraint.get("columns"):
            return list(constraint["columns"]), "primary_key constraint"
    columns = list(node.get("columns") or {})
    constrained = [
        name
        for name, column in (node.get("columns") or {}).items()
        if any(c.get("type") == "primary_key" for c in column.get("constraints") or [])
    ]
    if constrained:
        return constrained, "primary_key constraint"
    tests: dict[str, set[str]] = {}
    combinations: list[list[str]] = []
    for test in manifest["nodes"].values():
        metadata = test.get("test_metadata") or {}
        if test.get("resource_type") != "test" or test.get("attached_node") != unique_id or not metadata:
            continue
        if metadata.get("name") == "unique_combination_of_columns":
            combinations.append(list(metadata.get("kwargs", {}).get("combination_of_columns") or []))
        elif test.get("column_name"):
            tests.setdefault(metadata.get("name"), set()).add(test["column_name"])
    position = {name.lower(): index for index, name in enumerate(columns)}

    def first(names: Iterable[str]) -> str:
        return min(names, key=lambda name: (position.get(name.lower(), len(position)), name))

    unique, not_null = tests.get("unique", set()), tests.get("not_null", set())
    if unique & not_null:
        return [first(unique & not_null)], "unique + not_null tests"
    if combinations and combinations[0]:
        return combinations[0], "unique_combination_of_columns test"
    if unique:
        return [first(unique)], "unique test"
    return None, "no primary_key constraint and no unique test in the manifest"


@dataclass(frozen=True)
class Selection:
    unique_ids: list[str]  # the models the branch build selects
    pr_manifest: dict[str, Any]
    prod_manifest: dict[str, Any] | None
    description: str


def _is_relation(node: dict[str, Any]) -> bool:
    return node.get("resource_type") == "model" and node.get("config", {}).get("materialized") != "ephemeral"


class _ListedIds(io.TextIOBase):
    """Collects the `{"unique_id": ...}` lines `dbt ls --output json` prints; passes every other line to stderr."""

    def __init__(self) -> None:
        self.unique_ids: list[str] = []
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if line.startswith('{"unique_id"'):
                self.unique_ids.append(json.loads(line)["unique_id"])
            else:
                sys.stderr.write(line + "\n")
        return len(text)


def select_models(env: Environment, project_dir: Path = DBT_PROJECT_DIR, state_dir: Path | None = None) -> Selection:
    """`dbt ls` of the models with the branch build's own selection (`build.slim_selection` over `build.prod_state`)
    in the build's own target folder, so dbt's partial parse is reused; dbt's log goes to stderr."""
    from orchestration.branch.build import prod_state, slim_selection, work_dir
    from orchestration.lib.dbt import WarehouseDbtCliResource

    state = prod_state(env, state_dir)
    target = work_dir(env) / "target"
    args = ["ls", "--resource-type", "model", "--output", "json", "--output-keys", "unique_id"]
    dbt = WarehouseDbtCliResource.for_environment(env, project_dir)
    listed = _ListedIds()
    with redirect_stdout(listed):  # dbt prints `ls` results as plain lines, which dagster-dbt echoes to stdout
        invocation = dbt.cli([*args, *slim_selection(state)], target_path=target, raise_on_error=False)
        for _ in invocation.stream_raw_events():
            pass
        if invocation.process.wait() != 0:
            raise EnvironmentConfigError(f"dbt ls in {project_dir} failed: see dbt's log above")
    pr_manifest = json.loads((target / "manifest.json").read_text())
    prod_manifest = json.loads((state / "manifest.json").read_text()) if state else None
    description = "`state:modified+` against prod's manifest" if state else "every model (prod published no manifest)"
    return Selection(sorted(listed.unique_ids), pr_manifest, prod_manifest, description)


# ---------------------------------------------------------------- the report


@dataclass
class ModelDiff:
    unique_id: str
    name: str
    relation: str  # schema.name in the branch (in prod for a removed model)
    status: str  # changed | unchanged | added | removed | missing
    key_source: str = ""
    diff: TableDiff = field(default_factory=TableDiff)

    def to_json(self) -> dict[str, Any]:
        return {
            "unique_id": self.unique_id,
            "name": self.name,
            "relation": self.relation,
            "status": self.status,
            "key_source": self.key_source,
            **asdict(self.diff),
            "schema_changed": self.diff.schema_changed,
        }


@dataclass
class Report:
    branch_id: str
    prod: str
    branch: str
    selection: str
    models: list[ModelDiff]

    def by_status(self, status: str) -> list[ModelDiff]:
        return [model for model in self.models if model.status == status]

    def to_json(self) -> dict[str, Any]:
        statuses = ("changed", "unchanged", "added", "removed", "missing")
        return {
            "branch_id": self.branch_id,
            "prod": self.prod,
            "branch": self.branch,
            "selection": self.selection,
            "summary": {status: len(self.by_status(status)) for status in statuses},
            "models": [model.to_json() for model in self.models],
        }


def _relation(node: dict[str, Any], catalog: str) -> Relation:
    return Relation(catalog, node["schema"], node.get("alias") or node["name"])


def _reader_schema(schema: str) -> str:
    """`marts__slot_a` -> `marts`. Prod's manifest comes from its Write-Audit-Publish build, which puts every model
    in a versioned schema; prod's readers query `<schema>.<model>`, the view onto the published slot."""
    for slot in SLOTS:
        if schema.endswith(suffix := slot_schema("", slot)):
            return schema.removesuffix(suffix)
    return schema


def _prod_relation(node: dict[str, Any], catalog: str) -> Relation:
    """Where prod's readers find a model of prod's manifest: what the report names and compares against."""
    return Relation(catalog, _reader_schema(node["schema"]), node.get("alias") or node["name"])


def diff_branch(
    env: Environment,
    project_dir: Path = DBT_PROJECT_DIR,
    state_dir: Path | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    samples: int = DEFAULT_SAMPLES,
    session: Session | None = None,
    connect: Callable[[], duckdb.DuckDBPyConnection] | None = None,
) -> Report:
    """Diff every model the branch build selects, plus the models the PR removed, clone against prod."""
    session = session or session_for(env, memory_limit)  # first: a missing clone fails before dbt starts
    selection = select_models(env, project_dir, state_dir)
    prod_nodes = (selection.prod_manifest or {}).get("nodes", {})
    pr_nodes = selection.pr_manifest["nodes"]
    removed = sorted(uid for uid, node in prod_nodes.items() if _is_relation(node) and uid not in pr_nodes)
    models: list[ModelDiff] = []
    with session.open(connect) as con:
        for unique_id in selection.unique_ids:
            node = pr_nodes[unique_id]
            if not _is_relation(node):
                continue
            after = _relation(node, session.branch_catalog)
            in_prod = prod_nodes.get(unique_id) if selection.prod_manifest is not None else node
            before = _prod_relation(in_prod, session.prod_catalog) if in_prod and _is_relation(in_prod) else None
            key, source = model_key(selection.pr_manifest, unique_id)
            table = diff_tables(con, before, after, key, session.scratch, samples, no_key_reason=source)
            if table.rows_after is None:
                status = "missing"
                table.note = "not in the clone: the branch build did not build it (see its log)"
            elif table.rows_before is None:
                status = "added"
            elif table.schema_changed or table.data_changed:
                status = "changed"
            else:
                status = "unchanged"
            models.append(ModelDiff(unique_id, node["name"], after.label, status, source if key else "", table))
        for unique_id in removed:
            node = prod_nodes[unique_id]
            before = _prod_relation(node, session.prod_catalog)
            table = diff_tables(con, before, None, None, session.scratch, 0)
            table.note = "removed from the project (the clone still holds prod's copy until it is rebuilt)"
            models.append(ModelDiff(unique_id, node["name"], before.label, "removed", "", table))
    return Report(env.branch_id or "", env.prod_warehouse or "", env.warehouse, selection.description, models)


def failures(report: Report, kinds: Iterable[str]) -> list[str]:
    """Which of the `--fail-on` kinds occurred, each with the models it occurred in. Row kinds count rows of models
    on both sides; `schema` is a column added, removed or retyped, or a model added or removed."""
    found = []
    for kind in kinds:
        if kind == "schema":
            hits = [m.relation for m in report.models if m.diff.schema_changed or m.status in ("added", "removed")]
        else:
            attribute = {"added-rows": "added_rows", "removed-rows": "removed_rows", "changed-rows": "changed_rows"}
            hits = [m.relation for m in report.models if m.status == "changed" and getattr(m.diff, attribute[kind]) > 0]
        if hits:
            found.append(f"{kind}: {', '.join(hits)}")
    return found


# ---------------------------------------------------------------- Markdown


def _cell(value: Any) -> str:
    if value is None:
        return "*null*"
    text = str(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _schema_summary(diff: TableDiff) -> str:
    parts = [f"{len(diff.columns_added)} added"] if diff.columns_added else []
    parts += [f"{len(diff.columns_removed)} removed"] if diff.columns_removed else []
    parts += [f"{len(diff.columns_retyped)} retyped"] if diff.columns_retyped else []
    return ", ".join(parts) if parts else "-"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def to_markdown(report: Report) -> str:
    """The PR comment / job summary: one table of every model, then what changed in each changed model."""
    counts = report.to_json()["summary"]
    lines = [
        MARKER,
        f"### Data diff: branch `{report.branch_id}` against prod",
        "",
        f"{len(report.models)} models compared ({report.selection}): "
        + ", ".join(f"**{counts[s]} {s}**" if s == "changed" else f"{counts[s]} {s}" for s in counts if counts[s])
        + ". Prod was only read.",
        "",
    ]
    if not report.models:
        return "\n".join([*lines, "The PR changes no model.", ""])
    rows = []
    for model in report.models:
        diff = model.diff
        keyed = diff.method == "keyed"
        rows.append(
            [
                f"`{model.relation}`",
                model.status,
                f"{_n(diff.rows_before)} → {_n(diff.rows_after)}",
                _n(diff.added_rows) if model.status == "changed" else "",
                _n(diff.removed_rows) if model.status == "changed" else "",
                (_n(diff.changed_rows) if keyed else "n/a") if model.status == "changed" else "",
                _schema_summary(diff),
                ", ".join(f"`{k}`" for k in diff.key)
                if keyed and diff.key
                else "whole row"
                if diff.method != "none"
                else "",
            ]
        )
    header = ["model", "status", "rows before → after", "added", "removed", "changed", "schema", "key"]
    lines += _table(header, rows)
    for model in report.models:
        if model.status in ("changed", "added", "removed", "missing"):
            lines += ["", *_model_section(model)]
    unchanged = report.by_status("unchanged")
    if unchanged:
        lines += ["", "Unchanged: " + ", ".join(f"`{m.relation}`" for m in unchanged) + "."]
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_MARKDOWN_CHARS:
        text = text[:MAX_MARKDOWN_CHARS] + "\n\n*(cut: the full report is in the JSON output)*\n"
    return text


def _model_section(model: ModelDiff) -> list[str]:
    diff = model.diff
    lines = [f"#### `{model.relation}`: {model.status}"]
    if model.status == "added":
        return [*lines, f"New model: {_n(diff.rows_after)} rows."]
    if model.status in ("removed", "missing"):
        return [*lines, f"{diff.note.capitalize()}. Rows in prod: {_n(diff.rows_before)}."]
    if diff.method == "keyed":
        lines.append(f"Keyed diff on {', '.join(f'`{k}`' for k in diff.key or [])} ({model.key_source}).")
    else:
        lines.append(
            f"Whole-row diff: {diff.note.removesuffix(': whole-row diff')} (a changed row is one removed "
            "and one added)."
        )
    lines.append(
        f"Rows added {_n(diff.added_rows)}, removed {_n(diff.removed_rows)}"
        + (f", changed {_n(diff.changed_rows)}." if diff.method == "keyed" else ".")
    )
    schema = [[f"`{c['name']}`", "added", c["type"]] for c in diff.columns_added]
    schema += [[f"`{c['name']}`", "removed", c["type"]] for c in diff.columns_removed]
    schema += [[f"`{c['name']}`", "retyped", f"{c['before']} → {c['after']}"] for c in diff.columns_retyped]
    if schema:
        lines += ["", *_table(["column", "change", "type"], schema)]
    if diff.changed_columns:
        lines += [
            "",
            *_table(["column", "rows changed"], [[f"`{c}`", f"{n:,}"] for c, n in diff.changed_columns.items()]),
        ]
    for kind in ("changed", "added", "removed"):
        rows = diff.samples.get(kind)
        if not rows:
            continue
        lines += ["", f"<details><summary>{len(rows)} sample {kind} rows</summary>", ""]
        if kind == "changed":
            key = diff.key or []
            table_rows = [
                [*(sample["key"][k] for k in key), column, values["before"], values["after"]]
                for sample in rows
                for column, values in sample["changes"].items()
            ]
            lines += _table([*key, "column", "before", "after"], table_rows)
        else:
            header = list(rows[0])
            lines += _table(header, [[row[column] for column in header] for row in rows])
        lines += ["", "</details>"]
    return lines
