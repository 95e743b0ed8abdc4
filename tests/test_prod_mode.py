"""Prod mode as a user meets it: table names carry the environment's database, a load run leaves the dbt source
checks alone (they run with `dbt build`), and dlt's staging schemas do not stay in the warehouse. Real definitions,
real dlt loads into temp DuckDB files, real Dagster runs."""

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from extract.files.source import DEMO_DROPS
from orchestration.lib.dbt import ensure_manifest
from orchestration.lib.dbt_translator import WarehouseDbtTranslator, warehouse_database
from orchestration.lib.environment import resolve
from tests.support import use_platform_env

MART = dg.AssetKey(["marts", "fct_share_prices_daily"])
SHARE_PRICES = dg.AssetKey(["raw_files", "share_prices"])


def _environ(tmp_path: Path, name: str, prod: str) -> dict[str, str]:
    environ = {"ELT_DATA_DIR": str(tmp_path / "data"), "ELT_ENV": name, "ELT_PROD_DATABASE": prod}
    return {**environ, "ELT_BRANCH_ID": "pr-17"} if name == "branch" else environ


# ---------------------------------------------------------------- table names follow the environment


@pytest.mark.parametrize(
    ("name", "prod", "database"),
    [
        ("dev", "{tmp}/wh/prod.duckdb", "dev"),
        ("branch", "{tmp}/wh/prod.duckdb", "pr-17"),
        ("prod", "{tmp}/wh/prod.duckdb", "prod"),
        ("prod", "md:analytics", "analytics"),
        ("branch", "md:analytics", "analytics_clone_pr_17"),
    ],
)
def test_every_dbt_table_name_carries_the_environments_database(tmp_path, name, prod, database):
    """One manifest (parsed once, with no warehouse) names every model and source in the resolved database."""
    env = resolve(_environ(tmp_path, name, prod.format(tmp=tmp_path)))
    assert warehouse_database(env) == database
    manifest = json.loads(ensure_manifest().read_text())
    translator = WarehouseDbtTranslator(env)
    names = {}
    for unique_id, node in [*manifest["nodes"].items(), *manifest["sources"].items()]:
        if node["resource_type"] not in ("model", "seed", "snapshot", "source"):
            continue
        props = translator.get_resource_props(manifest, unique_id)
        names[unique_id] = translator.get_metadata(props)["dagster/table_name"]
    mart = next(uid for uid, node in manifest["nodes"].items() if node["name"] == MART.path[-1])
    assert names[mart] == f"{database}.marts.fct_share_prices_daily"
    assert all(table.startswith(f"{database}.") for table in names.values()), names
    assert len({table.split(".", 1)[1] for table in names.values()}) >= len(manifest["sources"])


def test_prod_definitions_name_the_prod_database(monkeypatch, tmp_path):
    from orchestration.definitions import load_definitions

    use_platform_env(monkeypatch, tmp_path / "data", ELT_ENV="prod", ELT_PROD_DATABASE=str(tmp_path / "prod.duckdb"))
    graph = load_definitions().resolve_asset_graph()
    assert graph.get(MART).metadata["dagster/table_name"] == "prod.marts.fct_share_prices_daily"
    dbt_tables = [
        graph.get(key).metadata["dagster/table_name"]
        for key in graph.materializable_asset_keys
        if "dbt" in graph.get(key).kinds
    ]
    assert dbt_tables and all(table.startswith("prod.") for table in dbt_tables), dbt_tables


# ---------------------------------------------------------------- a load run in prod


@pytest.fixture(scope="module")
def prod_files_runs(tmp_path_factory):
    """`files_load` twice in prod on a temp prod warehouse, as the drop sensor launches it: the first demo file,
    then all of them (the first one again: a merge into rows that exist)."""
    from orchestration.definitions import load_definitions

    tmp = tmp_path_factory.mktemp("prod_files")
    drops = tmp / "drops"
    shutil.copytree(DEMO_DROPS, drops)
    names = sorted(path.name for path in drops.glob("*.csv"))
    assert len(names) >= 2
    with pytest.MonkeyPatch.context() as monkeypatch, dg.instance_for_test() as instance:
        use_platform_env(
            monkeypatch,
            tmp / "data",
            ELT_ENV="prod",
            ELT_PROD_DATABASE=str(tmp / "prod.duckdb"),
            ELT_FILES_DROP_DIR=str(drops),
        )
        defs = load_definitions()
        instance.add_dynamic_partitions("share_price_files", names)
        job = defs.resolve_job_def("files_load")
        runs = [
            job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            )
            for first, last in [(names[0], names[0]), (names[0], names[-1])]
        ]
        graph = defs.resolve_asset_graph()
        checks = {
            key: instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
            for key in graph.asset_check_keys
            if key.asset_key == SHARE_PRICES
        }
        planned = {
            run.run_id: {
                record.event_log_entry.dagster_event.asset_check_planned_data.asset_check_key
                for record in instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
                ).records
            }
            for run in runs
        }
        dbt_build_checks = set(defs.resolve_job_def("dbt_build").asset_layer.asset_graph.asset_check_keys)
        yield {
            "runs": runs,
            "checks": checks,
            "planned": planned,
            "dbt_build_checks": dbt_build_checks,
            "warehouse": tmp / "prod.duckdb",
        }


def test_a_load_run_plans_and_skips_no_dbt_source_check(prod_files_runs):
    runs, checks = prod_files_runs["runs"], prod_files_runs["checks"]
    assert all(run.success for run in runs)
    run_ids = {run.run_id for run in runs}
    dbt_source_checks = {key for key in checks if key.name != "file_integrity"}
    assert len(dbt_source_checks) >= 5, "dbt source tests on raw_files report as checks on the extract asset"
    for key, history in checks.items():
        in_these_runs = [record for record in history if record.run_id in run_ids]
        if key in dbt_source_checks:
            assert not in_these_runs, f"{key.name}: planned by a files_load run ({in_these_runs[0].status})"
        else:  # the load's own integrity check: evaluated, passed, in each run
            assert [record.status.value for record in in_these_runs] == ["SUCCEEDED"] * len(runs)
    for run in runs:  # what a run plans and does not evaluate, the UI shows SKIPPED
        evaluated = {evaluation.asset_check_key for evaluation in run.get_asset_check_evaluations()}
        assert prod_files_runs["planned"][run.run_id] == evaluated == {dg.AssetCheckKey(SHARE_PRICES, "file_integrity")}


def test_dbt_build_still_runs_the_source_checks(prod_files_runs):
    dbt_source_checks = {key for key in prod_files_runs["checks"] if key.name != "file_integrity"}
    assert dbt_source_checks <= prod_files_runs["dbt_build_checks"]


def _schemas(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {name for (name,) in con.sql("select schema_name from information_schema.schemata").fetchall()}


def test_no_dlt_staging_schema_stays_in_the_warehouse(prod_files_runs):
    """Both loads landed every file in raw_files, and left no `*_staging` schema beside it."""
    schemas = _schemas(prod_files_runs["warehouse"])
    assert "raw_files" in schemas
    assert not {name for name in schemas if name.endswith("_staging")}, schemas
    with duckdb.connect(str(prod_files_runs["warehouse"]), read_only=True) as con:
        loaded = con.sql("select count(distinct _source_file) from raw_files.share_prices").fetchone()[0]
    assert loaded == len(list(DEMO_DROPS.glob("*.csv")))


def test_no_extract_asset_leaves_a_dlt_staging_schema(demo_raw_warehouse):
    """Every extract asset, run through Dagster as `elt run` does (the session's raw warehouse): dlt merged NeoWs and
    Hacker News through their staging schemas, and none is left."""
    schemas = _schemas(demo_raw_warehouse)
    assert {"raw_files", "raw_nasa", "raw_hackernews", "raw_shop"} <= schemas
    assert not {name for name in schemas if name.endswith("_staging")}, schemas
