"""The dbt project as the platform runs it, whatever sources it holds: every dbt test reports as a passing asset
check, docs generate with every model and column described, a failing test blocks exactly the assets downstream of
it, and the dev data window does not make `state:modified` see changes. Models, tests and sources come from the
manifest; what each source's marts hold is tested in that source's own file (`tests/test_<source>_dbt.py`).

The demo data comes from the session's fixtures: `demo_run` (one whole `elt run`: raw tables, dev marts and the
Dagster instance that ran them) and `demo_raw_warehouse` (the raw tables alone); a test that writes copies the file.
"""

import json
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import get_asset_key_for_model

from orchestration.defs.dbt.assets import dbt_assets_for
from orchestration.lib.asset_keys import raw_table_asset_key
from orchestration.lib.environment import resolve
from tests.support import copy_warehouse, dbt_env, manifest, query, run_dbt

dbt_models, _ = dbt_assets_for()


def materialize_dbt(warehouse: Path) -> dg.ExecuteInProcessResult:
    """The dbt assets materialized by Dagster, as in `elt run`, on `warehouse` (dev target, default vars)."""
    from orchestration.lib.dbt import WarehouseDbtCliResource
    from orchestration.lib.warehouse import WarehouseResource

    env = resolve(dbt_env(warehouse))
    dbt = WarehouseDbtCliResource.for_environment(env)
    warehouse_resource = WarehouseResource.from_environment(env)
    return dg.materialize([dbt_models], resources={"dbt": dbt, "warehouse": warehouse_resource}, raise_on_error=False)


def logged_events(data_dir: Path, event_type: dg.DagsterEventType) -> list:
    """The events of `event_type` of every run in the Dagster instance of a data dir, oldest run first."""
    with dg.DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
        return [
            entry.dagster_event
            for run in reversed(instance.get_runs())
            for entry in instance.all_logs(run.run_id, of_type=event_type)
        ]


def from_dbt_test(metadata: dict) -> bool:
    """Whether an event's metadata says a dbt test produced it (dagster-dbt stamps the node's unique_id)."""
    unique_id = metadata.get("unique_id")
    return unique_id is not None and str(getattr(unique_id, "value", unique_id)).startswith("test.")


def test_every_dbt_test_reports_as_a_passing_asset_check(demo_run):
    """In the demo `elt run`, every data test of the manifest ran as an asset check, on the asset the translator
    maps its model or source to, and passed; none fell back to an observation."""
    project = manifest()
    data_tests = {node["name"] for node in project["nodes"].values() if node["resource_type"] == "test"}
    evaluations = [
        event.asset_check_evaluation_data
        for event in logged_events(demo_run.data_dir, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    dbt_evaluations = [evaluation for evaluation in evaluations if from_dbt_test(evaluation.metadata)]
    assert {evaluation.check_name for evaluation in dbt_evaluations} == data_tests
    assert [evaluation.check_name for evaluation in dbt_evaluations if not evaluation.passed] == []
    observations = [
        event.asset_observation_data.asset_observation
        for event in logged_events(demo_run.data_dir, dg.DagsterEventType.ASSET_OBSERVATION)
    ]
    assert [observation for observation in observations if from_dbt_test(observation.metadata)] == []

    # tests on sources report on the extract assets' keys, which the translator maps the sources to
    tested_sources = {
        raw_table_asset_key(source["schema"], source["identifier"]).to_user_string()
        for node in project["nodes"].values()
        if node["resource_type"] == "test" and len(node["depends_on"]["nodes"]) == 1
        for unique_id in node["depends_on"]["nodes"]
        if (source := project["sources"].get(unique_id))
    }
    models = {key.to_user_string() for key in dbt_models.keys}
    checked = {evaluation.asset_key.to_user_string() for evaluation in dbt_evaluations}
    assert checked - models == tested_sources


def test_docs_generate_and_every_model_and_column_is_described(demo_run, tmp_path):
    warehouse = copy_warehouse(demo_run.warehouse, tmp_path)
    target = tmp_path / "target"
    run_dbt("docs", "generate", warehouse=warehouse, target_path=target)
    catalog = json.loads((target / "catalog.json").read_text())
    generated = json.loads((target / "manifest.json").read_text())
    models = {uid: node for uid, node in generated["nodes"].items() if node["resource_type"] == "model"}
    assert models and set(models) <= set(catalog["nodes"]), "every model is in the warehouse catalog"
    undescribed = [uid for uid, node in models.items() if not node["description"].strip()]
    for uid, node in models.items():
        described = {name.lower() for name, column in node["columns"].items() if column["description"].strip()}
        undescribed += [f"{uid}.{name}" for name in catalog["nodes"][uid]["columns"] if name.lower() not in described]
    assert undescribed == []


# tests a duplicated row breaks, whatever the columns
UNIQUE_TESTS = ("unique", "unique_combination_of_columns")


def unique_source_test(project: dict, warehouse: Path) -> tuple[dict, dict]:
    """The first uniqueness test (by id) of error severity on a source whose raw table has rows, and that source."""
    for _, node in sorted(project["nodes"].items()):
        if node["resource_type"] != "test" or node.get("test_metadata", {}).get("name") not in UNIQUE_TESTS:
            continue
        sources = [project["sources"][parent] for parent in node["depends_on"]["nodes"] if parent.startswith("source.")]
        if len(sources) != 1 or node["config"].get("where") or node["config"]["severity"].lower() != "error":
            continue
        [source] = sources
        [(rows,)] = query(warehouse, f'select count(*) from "{source["schema"]}"."{source["identifier"]}"')
        if rows:
            return node, source
    raise AssertionError("no uniqueness test on a source with rows in the demo warehouse")


def models_downstream(project: dict, unique_id: str) -> set[str]:
    """The names of every model downstream of a node, as dbt's child map has them."""
    seen: set[str] = set()
    frontier = [unique_id]
    while frontier:
        for child in project["child_map"][frontier.pop()]:
            if child.startswith("model.") and child not in seen:
                seen.add(child)
                frontier.append(child)
    return {project["nodes"][unique_id]["name"] for unique_id in seen}


def test_failing_tests_block_the_assets_downstream_of_them(demo_raw_warehouse, tmp_path):
    """A duplicated row in a raw table fails a uniqueness test on that source: the models downstream of the source
    are not built; every other model is."""
    project = manifest()
    warehouse = copy_warehouse(demo_raw_warehouse, tmp_path)
    test, source = unique_source_test(project, warehouse)
    raw_table = f'"{source["schema"]}"."{source["identifier"]}"'
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"insert into {raw_table} select * from {raw_table} limit 1")
    result = materialize_dbt(warehouse)

    # a source's tests report on the extract asset the translator maps the source to
    raw_key = raw_table_asset_key(source["schema"], source["identifier"])
    failed = {(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations() if not e.passed}
    assert (raw_key, test["name"]) in failed
    assert {key for key, _ in failed} == {raw_key}, failed
    blocked = {get_asset_key_for_model([dbt_models], name) for name in models_downstream(project, source["unique_id"])}
    assert blocked, f"no model reads {raw_table}"
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == set(dbt_models.keys) - blocked


def test_dev_window_does_not_make_state_modified_see_changes(demo_raw_warehouse, tmp_path):
    """The window depends on the target only inside the SQL body, so a dev manifest compared with prod's shows no
    modified node; a bad window setting is named in the error."""
    warehouse = copy_warehouse(demo_raw_warehouse, tmp_path)
    prod = {"ELT_ENV": "prod", "ELT_PROD_DATABASE": str(tmp_path / "prod.duckdb")}
    run_dbt("parse", warehouse=warehouse, target_path=tmp_path / "prod_state", env=prod)
    listed = run_dbt(
        "ls", "-q", "-s", "state:modified", "--state", str(tmp_path / "prod_state"),
        warehouse=warehouse, target_path=tmp_path / "dev",
    )  # fmt: skip
    assert listed.stdout.strip() == ""

    # the window over a query of its own, so the check needs no source's model
    days = "(select current_date as day)"
    windowed = f"select * from {days} {{{{ limit_to_dev_window('day', '{days}') }}}}"
    bad = run_dbt(
        "compile", "--inline", windowed, "--vars", "{dev_window_days: ninety}",
        warehouse=warehouse, target_path=tmp_path / "dev", check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "var dev_window_days must be a whole number of days >= 1, got ninety" in bad.stdout
