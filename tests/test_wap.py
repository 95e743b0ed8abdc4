"""Write-Audit-Publish in prod (orchestration/lib/publish.py): real DuckDB files, real dbt, real Dagster runs.

The tests know no source by name: every model, data test, raw table and lineage edge they use is read from the dbt
manifest, so they run on whatever sources a fork keeps. They start from the session's published prod (one passing
run of every model, `published_prod`) and work on copies of it; a second publish, from a run of a subset of the
models on new data, is built once per module (`two_publishes`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_dbt import get_asset_key_for_model

from orchestration.branch.clones import motherduck_create_sql
from orchestration.defs.dbt.assets import dbt_assets_for
from orchestration.lib import publish
from orchestration.lib.asset_keys import raw_table_asset_key
from orchestration.lib.dbt import WarehouseDbtCliResource
from orchestration.lib.environment import REPO_ROOT, resolve
from orchestration.lib.warehouse import WarehouseResource
from tests.support import (
    clean_environ,
    copy_warehouse,
    elt,
    manifest,
    mart_models,
    materialize_prod,
    prod_settings,
    query,
    relation_content,
)

# ---------------------------------------------------------------- what the manifest says


def models_of(manifest: Mapping) -> dict[str, dict]:
    """Every model with a relation (ephemeral ones have none), by unique id: the models WAP publishes."""
    return {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["config"].get("materialized") != "ephemeral"
    }


def reader(node: Mapping) -> str:
    """`<schema>.<table>`: where readers query a model (a view onto its published slot in prod)."""
    return f"{node['schema']}.{node.get('alias') or node['name']}"


def in_slot(node: Mapping, slot: str) -> str:
    return f'"{publish.slot_schema(node["schema"], slot)}"."{node.get("alias") or node["name"]}"'


def raw_table(source: Mapping) -> str:
    return f'"{source["schema"]}"."{source.get("identifier") or source["name"]}"'


def downstream(manifest: Mapping, unique_id: str) -> set[str]:
    """Every node built from `unique_id`, directly or not (the child map's closure), without itself."""
    seen, todo = set(), [unique_id]
    while todo:
        for child in manifest["child_map"].get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def upstream(manifest: Mapping, unique_id: str) -> set[str]:
    """Every node `unique_id` is built from (the parent map's closure), with itself."""
    seen, todo = {unique_id}, [unique_id]
    while todo:
        for parent in manifest["parent_map"].get(todo.pop(), []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


@dataclass(frozen=True)
class Wap:
    """The module's choices, all made from the manifest.

    - `frozen`: the reader names of the models that are tables (incremental too): their content is fixed between
      publishes. Views (staging, usually) read raw and are live by nature.
    - `new_data`: the raw table the second run finds one row fewer in. It feeds at least one mart, no incremental
      model (a deleted row stays in one, by design), and no model that a `relationships` test checks others
      against (the delete could orphan a row and fail the audit).
    - `changed`: the frozen models downstream of it: what the second publish changes, and nothing else.
    - `excluded`: the models the second run leaves out, a mart and everything downstream of it, none of them
      downstream of `new_data`: they keep their published slot (the subset a run of the automation builds).
    - `subset`: the asset keys that run materializes (the other models and the publish step).
    """

    manifest: dict
    models: dict[str, dict]
    reader_schemas: tuple[str, ...]
    frozen: frozenset[str]
    new_data: dict
    changed: frozenset[str]
    excluded: frozenset[str]
    subset: tuple[dg.AssetKey, ...]
    publish_key: dg.AssetKey

    def selection(self) -> dg.AssetSelection:
        return dg.AssetSelection.assets(*self.subset)


def plan_wap(manifest: dict) -> Wap:
    models = models_of(manifest)
    marts = {node["unique_id"] for node in mart_models(manifest)}
    frozen = {uid for uid, node in models.items() if node["config"]["materialized"] != "view"}
    incremental = {uid for uid, node in models.items() if node["config"]["materialized"] == "incremental"}
    checked_against = set()  # the `to` side of every relationships test, and what it is built from
    for test in manifest["nodes"].values():
        if (test.get("test_metadata") or {}).get("name") == "relationships":
            for parent in test["depends_on"]["nodes"]:
                if parent != test.get("attached_node"):
                    checked_against |= upstream(manifest, parent)

    def fit_for_new_data(source: dict) -> bool:
        below = downstream(manifest, source["unique_id"])
        return bool(below & marts) and not below & incremental and source["unique_id"] not in checked_against

    fit = [source for source in manifest["sources"].values() if fit_for_new_data(source)]
    assert fit, "no raw table feeds a mart without an incremental model or a relationships test in between"
    new_data = max(fit, key=lambda s: (len(downstream(manifest, s["unique_id"]) & marts), s["unique_id"]))
    changed_ids = downstream(manifest, new_data["unique_id"]) & frozen

    def left_out(mart: str) -> set[str]:
        return ({mart} | downstream(manifest, mart)) & set(models)

    candidates = [left_out(mart) for mart in sorted(marts) if not left_out(mart) & changed_ids]
    excluded = max(candidates, key=len, default=set())  # none: every mart reads the new data; the run builds all
    dbt_models, dbt_publish = dbt_assets_for()
    subset = tuple(
        get_asset_key_for_model([dbt_models], node["name"])
        for uid, node in sorted(models.items())
        if uid not in excluded
    ) + (dbt_publish.key,)
    return Wap(
        manifest=manifest,
        models=models,
        reader_schemas=tuple(sorted({node["schema"] for node in models.values()})),
        frozen=frozenset(reader(models[uid]) for uid in frozen),
        new_data=new_data,
        changed=frozenset(reader(models[uid]) for uid in changed_ids),
        excluded=frozenset(excluded),
        subset=subset,
        publish_key=dbt_publish.key,
    )


@pytest.fixture(scope="module")
def wap() -> Wap:
    return plan_wap(manifest())


# ---------------------------------------------------------------- what a warehouse holds


def published_content(warehouse: Path, wap: Wap) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent hash of every reader-facing relation."""
    return relation_content(warehouse, wap.reader_schemas)


def frozen(content: Mapping[str, tuple[int, int]], wap: Wap) -> dict[str, tuple[int, int]]:
    """The published tables of `content`; the views over raw are live by nature."""
    return {name: value for name, value in content.items() if name in wap.frozen}


def differing(before: Mapping, after: Mapping) -> set[str]:
    assert before.keys() == after.keys(), before.keys() ^ after.keys()
    return {name for name in before if before[name] != after[name]}


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        str(
            event.step_failure_data.user_failure_data.description
            if event.step_failure_data.user_failure_data
            else event.step_failure_data.error
        )
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    ]


def delete_a_row(warehouse: Path, source: Mapping) -> None:
    """New data for the second run: the raw table has one row fewer (its first by DuckDB's row id)."""
    table = raw_table(source)
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute(f"select count(*) from {table}").fetchone()[0] > 1, f"{table} has too few rows"
        con.execute(f"delete from {table} where rowid = (select min(rowid) from {table})")


def manifest_slots(manifest_json: str, nodes: Iterable[Mapping]) -> dict[str, str]:
    """The schema a stored manifest (prod's, a publish's) names for each of `nodes`."""
    stored = json.loads(manifest_json)["nodes"]
    return {node["name"]: stored[node["unique_id"]]["schema"] for node in nodes}


# ---------------------------------------------------------------- shared states


@pytest.fixture(scope="module")
def two_publishes(published_prod: Path, wap: Wap, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`published_prod` after a second passing run, of the subset, with one raw row of `wap.new_data` deleted:
    publish 2 in slot b, publish 1 kept in slot a; the models left out stay published in slot a."""
    warehouse = copy_warehouse(published_prod, tmp_path_factory.mktemp("wap_two"), "prod.duckdb")
    delete_a_row(warehouse, wap.new_data)
    result = materialize_prod(warehouse, wap.selection())
    assert result.success, failures(result)
    return warehouse


# ---------------------------------------------------------------- publish


def test_a_passing_run_publishes_views_onto_the_audited_slot(published_prod, wap):
    content = published_content(published_prod, wap)
    assert content.keys() == {reader(node) for node in wap.models.values()}
    assert all(content[reader(node)][0] > 0 for node in mart_models(wap.manifest)), content  # the demos feed each
    kinds = dict(
        query(
            published_prod,
            "select table_schema || '.' || table_name, table_type from information_schema.tables "
            f"where table_schema in {wap.reader_schemas + ('',)}",
        )
    )
    assert set(kinds.values()) == {"VIEW"}, kinds
    with duckdb.connect(str(published_prod), read_only=True) as con:
        for node in wap.models.values():  # each reader view selects its model's slot a, and shows what it holds
            slot = con.execute(f"select count(*), coalesce(sum(hash(t)::hugeint), 0) from {in_slot(node, 'a')} t")
            assert slot.fetchone() == content[reader(node)], reader(node)
        views = dict(
            con.execute(
                "select schema_name || '.' || view_name, sql from duckdb_views() "
                f"where schema_name in {wap.reader_schemas + ('',)}"
            ).fetchall()
        )
        for node in wap.models.values():
            definition = views[reader(node)].replace('"', "").lower()  # as DuckDB prints it: unquoted
            assert f"from {in_slot(node, 'a')}".replace('"', "").lower() in definition, definition
        slots = con.execute("select model, current_slot, previous_slot from elt_meta.wap_models").fetchall()
        assert sorted(slots) == sorted((node["name"], "a", None) for node in wap.models.values())
        assert con.execute("select publish_id, kind from elt_meta.wap_publishes").fetchall() == [(1, "publish")]
        assert con.execute("select count(*) from elt_meta.wap_audit").fetchone()[0] == 0
        # the manifest PR branches compare against names the published slots
        installed = con.execute("select manifest from elt_meta.dbt_prod_manifest").fetchone()[0]
    assert manifest_slots(installed, wap.models.values()) == {
        node["name"]: publish.slot_schema(node["schema"], "a") for node in wap.models.values()
    }


def data_test_to_break(manifest: Mapping) -> tuple[dict, dict]:
    """A `not_null` (else `unique`) data test on one source, failing the audit when it fails: the test and its
    source. A null in one row fails only that test; the source's models downstream are skipped by dbt."""
    tests = [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and (node.get("test_metadata") or {}).get("name") in ("not_null", "unique")
        and str(node["config"].get("severity", "error")).lower() == "error"
        and not node["config"].get("where")
        and len(node["depends_on"]["nodes"]) == 1
        and node["depends_on"]["nodes"][0] in manifest["sources"]
    ]
    assert tests, "no source has a not_null or unique test: add one to a source's YAML to test a failing audit"
    test = min(tests, key=lambda node: (node["test_metadata"]["name"] != "not_null", node["unique_id"]))
    return test, manifest["sources"][test["depends_on"]["nodes"][0]]


def break_data_test(warehouse: Path, test: Mapping, source: Mapping) -> None:
    """One row of the source's raw table that fails `test`: its column nulled (not_null), or a copy (unique)."""
    table, column = raw_table(source), test["test_metadata"]["kwargs"]["column_name"]
    with duckdb.connect(str(warehouse)) as con:
        if test["test_metadata"]["name"] == "not_null":
            nullable = con.execute(
                "select is_nullable from information_schema.columns where table_schema = ? and table_name = ? "
                "and column_name = ?",
                [source["schema"], source.get("identifier") or source["name"], column.strip('"')],
            ).fetchone()
            assert nullable, f"{table} has no column {column}"
            if nullable[0] == "NO":  # the loader declared it NOT NULL; the test must still catch what slips through
                con.execute(f"alter table {table} alter column {column} drop not null")
            con.execute(f"update {table} set {column} = null where rowid = (select min(rowid) from {table})")
        else:
            con.execute(
                f"insert into {table} select * from {table} "
                f"where rowid = (select min(rowid) from {table} where {column} is not null)"
            )


def test_a_failing_test_publishes_nothing_and_names_the_test_and_model(published_prod, wap, tmp_path):
    warehouse = copy_warehouse(published_prod, tmp_path, "prod.duckdb")
    test, source = data_test_to_break(wap.manifest)
    before = published_content(warehouse, wap)
    break_data_test(warehouse, test, source)
    result = materialize_prod(warehouse)

    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert message.splitlines()[1:] == [f"test {test['name']} on {source['name']}: fail, 1 failing rows"], message
    publish_step = [e for e in result.all_events if e.step_key and "dbt_publish" in e.step_key]
    assert not any(e.event_type_value == "STEP_SUCCESS" for e in publish_step)  # the failed audit blocks it
    failed_checks = {(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations() if not e.passed}
    key = raw_table_asset_key(source["schema"], source.get("identifier") or source["name"])
    assert failed_checks == {(key, test["name"])}

    # views over raw are live by nature; every published table keeps its content
    assert frozen(published_content(warehouse, wap), wap) == frozen(before, wap)
    # what the failure did not touch was built and audited in slot b, and stays queryable for diagnosis
    untouched = [node for uid, node in wap.models.items() if uid not in downstream(wap.manifest, source["unique_id"])]
    assert untouched, "every model reads the source whose test fails"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for node in untouched:
            built = [
                con.execute(f"select count(*), sum(hash(t)::hugeint) from {in_slot(node, s)} t").fetchone()
                for s in "ab"
            ]
            assert built[1] == built[0], reader(node)
        assert con.execute("select count(*) from elt_meta.wap_audit").fetchone()[0] == 0
        assert con.execute("select count(*) from elt_meta.wap_publishes").fetchone()[0] == 1


# ---------------------------------------------------------------- a second publish, a subset run, rollback


def test_a_second_run_publishes_and_rollback_restores_the_previous_content(
    published_prod, two_publishes, wap, tmp_path
):
    warehouse = copy_warehouse(two_publishes, tmp_path, "prod.duckdb")
    first, second = published_content(published_prod, wap), published_content(warehouse, wap)
    assert wap.changed, f"no table downstream of {raw_table(wap.new_data)}"
    assert differing(frozen(first, wap), frozen(second, wap)) == wap.changed
    with duckdb.connect(str(published_prod), read_only=True) as con:
        first_manifest = con.execute("select manifest from elt_meta.dbt_prod_manifest").fetchone()[0]

    rolled = elt("prod", "rollback", settings=prod_settings(warehouse), timeout=120, cwd=REPO_ROOT)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "rolled back publish 2" in rolled.stdout
    assert frozen(published_content(warehouse, wap), wap) == frozen(first, wap)
    with duckdb.connect(str(warehouse)) as con:
        manifest_now = con.execute("select manifest from elt_meta.dbt_prod_manifest").fetchone()[0]
        assert manifest_now == first_manifest  # prod's manifest is publish 1's again
        publish.rollback(con)  # a second rollback undoes the first
    assert frozen(published_content(warehouse, wap), wap) == frozen(second, wap)


def test_a_subset_run_keeps_the_published_slots_of_the_models_it_leaves_out(published_prod, two_publishes, wap):
    if not wap.excluded:
        pytest.skip("every mart is downstream of the raw table with new data: the second run builds them all")
    left_out = [wap.models[uid] for uid in sorted(wap.excluded)]
    built = [node for uid, node in wap.models.items() if uid not in wap.excluded]
    first, second = published_content(published_prod, wap), published_content(two_publishes, wap)
    assert {reader(node): second[reader(node)] for node in left_out} == {
        reader(node): first[reader(node)] for node in left_out
    }
    with duckdb.connect(str(two_publishes), read_only=True) as con:
        slots = dict(
            (model, (current, previous))
            for model, current, previous in con.execute(
                "select model, current_slot, previous_slot from elt_meta.wap_models"
            ).fetchall()
        )
        published = con.execute(
            "select models from elt_meta.wap_publishes where publish_id = 2 and kind = 'publish'"
        ).fetchone()[0]
        installed = con.execute("select manifest from elt_meta.dbt_prod_manifest").fetchone()[0]
        not_built = [
            node
            for node in left_out
            if not con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [publish.slot_schema(node["schema"], "b"), node.get("alias") or node["name"]],
            ).fetchone()[0]
        ]
    assert {node["name"]: slots[node["name"]] for node in left_out} == {node["name"]: ("a", None) for node in left_out}
    assert {node["name"]: slots[node["name"]] for node in built} == {node["name"]: ("b", "a") for node in built}
    assert sorted(published) == sorted(node["name"] for node in built)
    assert not_built == left_out  # never built in this run
    # prod's manifest names where each model is published now: PR branches compare against those tables
    assert manifest_slots(installed, wap.models.values()) == {
        node["name"]: publish.slot_schema(node["schema"], "a" if node in left_out else "b")
        for node in wap.models.values()
    }


def test_rollback_without_a_previous_publish_refuses(published_prod, wap, tmp_path):
    warehouse = copy_warehouse(published_prod, tmp_path, "prod.duckdb")
    before = published_content(warehouse, wap)
    with duckdb.connect(str(warehouse)) as con, pytest.raises(publish.PublishError, match="publish 1 was their first"):
        publish.rollback(con)
    assert published_content(warehouse, wap) == before


def test_a_reader_never_sees_a_mixed_state_while_publishing(two_publishes, wap, tmp_path):
    """A reader loop on its own connection reads every table the second publish changed, in one query, while
    publish and rollback swap every view back and forth: each answer is all publish 1 or all publish 2."""
    warehouse = copy_warehouse(two_publishes, tmp_path, "prod.duckdb")
    tables = sorted(wap.changed)  # with two or more, a half-done swap would pair one's old with another's new
    reads = ", ".join(
        f"(select count(*) || ':' || coalesce(sum(hash(t)::hugeint), 0) from {name} t)" for name in tables
    )
    read_all = f"select {reads}"
    with duckdb.connect(str(warehouse)) as con:
        second = con.execute(read_all).fetchone()
        publish.rollback(con)
        first = con.execute(read_all).fetchone()
        assert all(a != b for a, b in zip(first, second, strict=True)), (first, second)
        seen, stop = [], threading.Event()

        def read() -> None:
            reader_con = duckdb.connect(str(warehouse))  # the same database instance, its own connection
            while not stop.is_set():
                seen.append(reader_con.execute(read_all).fetchone())
            reader_con.close()

        thread = threading.Thread(target=read)
        thread.start()
        for _ in range(20):
            publish.rollback(con)
        stop.set()
        thread.join(timeout=30)
    assert len(seen) > 20
    assert set(seen) <= {first, second}, set(seen) - {first, second}
    assert set(seen) == {first, second}


# the build + audit of the subset (asset keys as JSON in argv), then SIGKILL before the publish step
KILL_AFTER_AUDIT = """
import json, os, signal, sys
import dagster as dg
from orchestration.defs.dbt.assets import dbt_assets_for
from orchestration.lib.dbt import WarehouseDbtCliResource
from orchestration.lib.environment import resolve
from orchestration.lib.warehouse import WarehouseResource
env = resolve()
dbt_models, dbt_publish = dbt_assets_for(env)
selection = dg.AssetSelection.assets(*(dg.AssetKey(path) for path in json.loads(sys.argv[1])))
result = dg.materialize([dbt_models, dbt_publish], resources={"dbt": WarehouseDbtCliResource.for_environment(env),
                        "warehouse": WarehouseResource.from_environment(env)}, selection=selection,
                        raise_on_error=False)
assert result.success
os.kill(os.getpid(), signal.SIGKILL)  # audited, never published
"""


@pytest.mark.slow
def test_sigkill_between_audit_and_publish_leaves_prod_and_the_next_run_publishes(
    published_prod, two_publishes, wap, tmp_path
):
    warehouse = copy_warehouse(published_prod, tmp_path, "prod.duckdb")
    delete_a_row(warehouse, wap.new_data)
    before = published_content(warehouse, wap)
    audit_only = json.dumps([key.path for key in wap.subset if key != wap.publish_key])
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_AUDIT, audit_only],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_environ(**prod_settings(warehouse)),
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert published_content(warehouse, wap) == before
    changed = [node for node in wap.models.values() if reader(node) in wap.changed]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from elt_meta.wap_audit").fetchone()[0] > 0  # audited, waiting
        for node in changed:  # the audit holds the new data, readers do not see it
            audited = con.execute(f"select count(*), sum(hash(t)::hugeint) from {in_slot(node, 'b')} t").fetchone()
            assert audited != before[reader(node)], reader(node)

    result = materialize_prod(warehouse, wap.selection())
    assert result.success, failures(result)
    after = published_content(warehouse, wap)
    assert differing(frozen(before, wap), frozen(after, wap)) == wap.changed
    assert frozen(after, wap) == frozen(published_content(two_publishes, wap), wap)  # as if never killed
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select max(publish_id) from elt_meta.wap_publishes").fetchone()[0] == 2


# ---------------------------------------------------------------- dev


def self_contained_mart(wap: Wap) -> set[str]:
    """The smallest table mart with the models it is built from, such that every test on them reads only them
    (dbt runs a `relationships` test with either side selected: the other side must be built too)."""
    tests = [node for node in wap.manifest["nodes"].values() if node["resource_type"] == "test"]
    closures = []
    for mart in mart_models(wap.manifest):
        if reader(mart) in wap.frozen:
            closure = upstream(wap.manifest, mart["unique_id"]) & set(wap.models)
            readable = closure | set(wap.manifest["sources"])
            touching = [
                set(test["depends_on"]["nodes"]) for test in tests if closure & set(test["depends_on"]["nodes"])
            ]
            if all(nodes <= readable for nodes in touching):
                closures.append(closure)
    return min(closures, key=lambda closure: (len(closure), sorted(closure)), default=set(wap.models))


def test_dev_builds_in_place_and_publishes_nothing(demo_raw_warehouse, wap, tmp_path):
    """WAP is off in dev (and branch): the models are tables and views in their own schemas, no slots."""
    warehouse = copy_warehouse(demo_raw_warehouse, tmp_path, "dev.duckdb")
    built = [wap.models[uid] for uid in sorted(self_contained_mart(wap))]
    env = resolve({"ELT_ENV": "dev", "ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(tmp_path / "data")})
    dbt_models, dbt_publish = dbt_assets_for(env)
    resources = {
        "dbt": WarehouseDbtCliResource.for_environment(env),
        "warehouse": WarehouseResource.from_environment(env),
    }
    selection = dg.AssetSelection.assets(*(get_asset_key_for_model([dbt_models], node["name"]) for node in built))
    result = dg.materialize([dbt_models, dbt_publish], resources=resources, selection=selection, raise_on_error=False)
    assert result.success, failures(result)
    kinds = dict(
        query(warehouse, "select table_schema || '.' || table_name, table_type from information_schema.tables")
    )
    schemas = {row[0] for row in query(warehouse, "select schema_name from information_schema.schemata")}
    assert {reader(node): kinds.get(reader(node)) for node in built} == {
        reader(node): "VIEW" if node["config"]["materialized"] == "view" else "BASE TABLE" for node in built
    }
    assert not any("__slot_" in schema for schema in schemas) and "elt_meta" not in schemas


# ---------------------------------------------------------------- MotherDuck
# no network here, so the SQL it would run is checked, and run on a local file to prove it works


def _model(name: str, schema: str = "marts") -> publish.Model:
    return publish.Model(name, schema, name)


def test_motherduck_publish_rollback_and_clone_sql():
    events, users = _model("fct_events"), _model("dim_users")
    published = {
        "fct_events": publish.Published(events, "a", None),
        "dim_users": publish.Published(users, "b", "a"),
    }
    audited = [publish.Audited(events, "b"), publish.Audited(users, "c")]
    statements = publish.publish_sql(audited, published, {("marts", "fct_events"): "VIEW"}, 3, "run-1")
    assert statements[0] == "begin transaction" and statements[-1] == "commit"
    views = [s for s in statements if s.startswith("create or replace view")]
    assert views == [
        'create or replace view "marts"."dim_users" as select * from "marts__slot_c"."dim_users"',
        'create or replace view "marts"."fct_events" as select * from "marts__slot_b"."fct_events"',
    ]
    body = " ".join(statements)
    # zero-copy: no table is created from data, no database copied; no catalog named (a clone resolves in itself)
    assert (
        "copy" not in body
        and "md:" not in body
        and " as select * from" not in body.replace(views[0], "").replace(views[1], "")
    )
    assert "'dim_users', 'marts', 'dim_users', 'c', 'b'" in body  # slots move: audit -> current -> previous

    rollback = publish.rollback_sql(["dim_users"], published, 4, 3)
    assert rollback[0] == "begin transaction" and rollback[-1] == "commit"
    assert 'create or replace view "marts"."dim_users" as select * from "marts__slot_a"."dim_users"' in rollback
    with pytest.raises(publish.PublishError, match="fct_events"):
        publish.rollback_sql(["fct_events"], published, 4, 3)
    with pytest.raises(publish.PublishError, match="audited slot a"):
        publish.publish_sql([publish.Audited(events, "a")], published, {}, 3, "run-1")

    assert motherduck_create_sql("analytics", "analytics_clone_7") == (
        'create or replace database "analytics_clone_7" from "analytics"'
    )

    # the same statements on a local DuckDB: they run, in one transaction
    with duckdb.connect() as con:
        publish.ensure_state(con)
        for slot in ("a", "b", "c"):
            con.execute(f"create schema marts__slot_{slot}")
            for name in ("fct_events", "dim_users"):
                con.execute(f"create table marts__slot_{slot}.{name} as select '{slot}' as slot")
        con.execute("create schema marts")
        con.execute("create view marts.fct_events as select * from marts__slot_a.fct_events")
        con.execute("create table marts.dim_users as select 0 as slot")  # a table from before WAP: replaced
        for statement in publish.publish_sql(audited, published, {("marts", "dim_users"): "BASE TABLE"}, 3, "r"):
            con.execute(statement)
        assert con.execute(
            "select (select slot from marts.fct_events), (select slot from marts.dim_users)"
        ).fetchone() == ("b", "c")
