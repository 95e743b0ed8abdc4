"""Prod mode as a user meets it: table names carry the environment's database, a load run leaves the dbt source
checks alone (they run with `dbt build`), and dlt's staging schemas do not stay in the warehouse. Real definitions,
real loads into temp DuckDB files, real Dagster runs. The mart, the partitioned extract asset and the jobs come from
the manifest and the loaded definitions, whatever sources are present."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.lib.dbt_translator import WarehouseDbtTranslator, warehouse_database
from orchestration.lib.environment import Environment, resolve
from orchestration.lib.planning import PlanContext, pending_partitions_finder
from tests.support import manifest, mart_models, use_platform_env

DBT = dg.AssetSelection.tag("dagster/kind/dbt", "")


def _environ(tmp_path: Path, name: str, prod: str) -> dict[str, str]:
    environ = {"ELT_DATA_DIR": str(tmp_path / "data"), "ELT_ENV": name, "ELT_PROD_DATABASE": prod}
    return {**environ, "ELT_BRANCH_ID": "pr-17"} if name == "branch" else environ


def _a_mart() -> dict:
    marts = mart_models(manifest())
    if not marts:
        pytest.skip("the dbt project has no model in the marts schema")
    return marts[0]


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
    project = manifest()
    translator = WarehouseDbtTranslator(env)
    names = {}
    for unique_id, node in [*project["nodes"].items(), *project["sources"].items()]:
        if node["resource_type"] not in ("model", "seed", "snapshot", "source"):
            continue
        props = translator.get_resource_props(project, unique_id)
        names[unique_id] = translator.get_metadata(props)["dagster/table_name"]
    mart = _a_mart()
    assert names[mart["unique_id"]] == f"{database}.marts.{mart.get('alias') or mart['name']}"
    assert all(table.startswith(f"{database}.") for table in names.values()), names
    assert len({table.split(".", 1)[1] for table in names.values()}) >= len(project["sources"])


def test_prod_definitions_name_the_prod_database(monkeypatch, tmp_path):
    from orchestration.definitions import load_definitions

    mart = _a_mart()
    use_platform_env(monkeypatch, tmp_path / "data", ELT_ENV="prod", ELT_PROD_DATABASE=str(tmp_path / "prod.duckdb"))
    graph = load_definitions().resolve_asset_graph()
    key = WarehouseDbtTranslator().get_asset_key(mart)
    assert graph.get(key).metadata["dagster/table_name"] == f"prod.marts.{mart.get('alias') or mart['name']}"
    dbt_tables = [
        graph.get(key).metadata["dagster/table_name"]
        for key in graph.materializable_asset_keys
        if "dbt" in graph.get(key).kinds
    ]
    assert dbt_tables and all(table.startswith("prod.") for table in dbt_tables), dbt_tables


# ---------------------------------------------------------------- a load run in prod


@dataclass(frozen=True)
class PartitionedLoad:
    assets_def: dg.AssetsDefinition
    pending: list[str]  # its pending partitions in a fresh prod, in partition order
    own_checks: set[dg.AssetCheckKey]  # the checks its own op evaluates
    dbt_source_checks: set[dg.AssetCheckKey]  # the dbt source tests on it, run by the dbt op

    @property
    def name(self) -> str:
        return self.assets_def.node_def.name


def _cheapest_partitioned_load(
    defs: dg.Definitions, instance: dg.DagsterInstance, env: Environment
) -> PartitionedLoad | None:
    """The partitioned extract asset with the fewest pending partitions (as `elt run`'s planner finds them) among
    those that have dbt source tests; None when no partitioned asset has both."""
    from orchestration.pipeline import partitioned_assets

    graph = defs.resolve_asset_graph()
    found = []
    for assets_def in partitioned_assets(defs):
        if set(assets_def.keys) & DBT.resolve(graph):
            continue
        on_it = {check for check in graph.asset_check_keys if check.asset_key in assets_def.keys}
        dbt_source_checks = on_it - set(assets_def.check_keys)
        if not dbt_source_checks:
            continue
        pending: set[str] = set()
        for key in assets_def.keys:  # a finder may register partitions (new files) in the instance
            context = PlanContext(instance, env, defs.resources, key, assets_def.partitions_def)
            pending |= set(pending_partitions_finder(assets_def.specs_by_key[key].metadata)(context))
        every = assets_def.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        if pending:
            ordered = [key for key in every if key in pending]
            found.append(PartitionedLoad(assets_def, ordered, on_it - dbt_source_checks, dbt_source_checks))
    return min(found, key=lambda load: (len(load.pending), load.name), default=None)


def _launched_job(defs: dg.Definitions, load: PartitionedLoad) -> str | None:
    """A job a schedule or sensor launches for the asset (it selects the asset and no dbt model), if any."""
    graph = defs.resolve_asset_graph()
    models = DBT.resolve(graph)
    names = {defs.resolve_schedule_def(schedule.name).job_name for schedule in defs.schedules or []}
    for sensor in defs.sensors or []:
        try:
            names.add(sensor.job_name)
        except Exception:  # a sensor with no job (or several) launches no load of its own
            continue
    for name in sorted(names - {None}):
        selected = defs.resolve_job_def(name).asset_layer.selected_asset_keys
        if set(load.assets_def.keys) <= selected and not selected & models:
            return name
    return None


def _row_counts(warehouse: Path, keys) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            key.to_user_string(): con.sql(f'select count(*) from "{key.path[0]}"."{key.path[-1]}"').fetchone()[0]
            for key in keys
        }


@dataclass
class ProdLoads:
    load: PartitionedLoad
    jobs: list[str]  # the job of each run
    runs: list[dg.ExecuteInProcessResult]
    planned: dict[str, set[dg.AssetCheckKey]]  # by run id: the checks each run planned
    history: dict[dg.AssetCheckKey, list]  # every evaluation of the checks on the asset
    dbt_build_checks: set[dg.AssetCheckKey]
    rows: list[dict[str, int]]  # the asset's tables' row counts after each pass: first partition, all, all again
    warehouse: Path


@pytest.fixture(scope="module")
def prod_loads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdLoads]:
    """On a temp prod warehouse: the cheapest partitioned extract asset, loaded as prod loads it: its first pending
    partition by the job its schedule or sensor launches, then every pending partition by `elt run`'s planner
    (the first one again: a merge into rows that exist), then all of them once more (nothing may double)."""
    from orchestration.definitions import load_definitions
    from orchestration.pipeline import plan_runs

    tmp = tmp_path_factory.mktemp("prod_loads")
    with pytest.MonkeyPatch.context() as monkeypatch, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, tmp / "data", ELT_ENV="prod", ELT_PROD_DATABASE=str(tmp / "prod.duckdb"))
        defs, env = load_definitions(), resolve()
        load = _cheapest_partitioned_load(defs, instance, env)
        if load is None:
            pytest.skip("no partitioned extract asset with pending partitions and dbt source tests")
        keys = {key.to_user_string(): load.pending for key in load.assets_def.keys}
        planned_runs = [
            run
            for run in plan_runs(
                defs, instance, env, partitions=keys, selection=dg.AssetSelection.assets(*load.assets_def.keys)
            )
            if run.job.name == f"elt_run__{load.name}"
        ]
        assert planned_runs, f"elt run plans no run of {load.name}"
        runnable = dg.Definitions.merge(defs, dg.Definitions(jobs=[planned_runs[0].job]))
        launched = _launched_job(defs, load) or planned_runs[0].job.name
        every_pending = [(run.job.name, run.tags) for run in planned_runs]
        passes = [[(launched, {"dagster/partition": load.pending[0]})], every_pending, every_pending]
        runs, jobs, rows = [], [], []
        for steps in passes:
            for job_name, tags in steps:
                result = runnable.resolve_job_def(job_name).execute_in_process(
                    instance=instance, tags=tags, raise_on_error=False
                )
                runs.append(result)
                jobs.append(job_name)
            rows.append(_row_counts(tmp / "prod.duckdb", load.assets_def.keys))
        planned = {
            run.run_id: {
                record.event_log_entry.dagster_event.asset_check_planned_data.asset_check_key
                for record in instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
                ).records
            }
            for run in runs
        }
        history = {
            key: instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
            for key in load.own_checks | load.dbt_source_checks
        }
        dbt_build_checks = set(defs.resolve_job_def("dbt_build").asset_layer.asset_graph.asset_check_keys)
        yield ProdLoads(load, jobs, runs, planned, history, dbt_build_checks, rows, tmp / "prod.duckdb")


def test_a_load_run_plans_and_skips_no_dbt_source_check(prod_loads):
    load, runs = prod_loads.load, prod_loads.runs
    print(f"{load.name}: {len(load.pending)} pending partition(s); runs of {sorted(set(prod_loads.jobs))}")
    assert all(run.success for run in runs), [
        str(event.step_failure_data) for run in runs for event in run.all_events if event.is_step_failure
    ]
    run_ids = {run.run_id for run in runs}
    for key, history in prod_loads.history.items():
        in_these_runs = [record for record in history if record.run_id in run_ids]
        if key in load.dbt_source_checks:
            assert not in_these_runs, f"{key.name}: planned by a load run ({in_these_runs[0].status})"
        else:  # the load's own checks: evaluated, passed, in each run
            assert [record.status.value for record in in_these_runs] == ["SUCCEEDED"] * len(runs), key
    for run in runs:  # what a run plans and does not evaluate, the UI shows SKIPPED
        evaluated = {evaluation.asset_check_key for evaluation in run.get_asset_check_evaluations()}
        assert prod_loads.planned[run.run_id] == evaluated == load.own_checks


def test_dbt_build_still_runs_the_source_checks(prod_loads):
    assert prod_loads.load.dbt_source_checks <= prod_loads.dbt_build_checks


def _schemas(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {name for (name,) in con.sql("select schema_name from information_schema.schemata").fetchall()}


def test_no_dlt_staging_schema_stays_in_the_warehouse(prod_loads):
    """Every load landed rows in the asset's schema, a re-load of loaded partitions doubled none, and no
    `*_staging` schema stays beside it."""
    schemas = _schemas(prod_loads.warehouse)
    assert {key.path[0] for key in prod_loads.load.assets_def.keys} <= schemas
    assert not {name for name in schemas if name.endswith("_staging")}, schemas
    first, again, last = prod_loads.rows
    assert all(first.values()), first
    assert all(first[table] <= count for table, count in again.items()), prod_loads.rows
    assert last == again, "a re-load of the same partitions changed the row counts"


def test_no_extract_asset_leaves_a_dlt_staging_schema(demo_raw_warehouse):
    """Every extract asset, run through Dagster as `elt run` does (the session's raw warehouse): every schema the dbt
    sources read is there, and no dlt staging schema is left beside them."""
    schemas = _schemas(demo_raw_warehouse)
    source_schemas = {source["schema"] for source in manifest()["sources"].values()}
    assert source_schemas and source_schemas <= schemas, source_schemas - schemas
    assert not {name for name in schemas if name.endswith("_staging")}, schemas
