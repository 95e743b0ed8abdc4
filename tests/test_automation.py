"""Declarative automation of the dbt models, on a real Dagster instance, real DuckDB and real dbt: after a real
`elt run`, nothing new launches no model; a new share-price file, loaded the way the drop sensor loads it, makes
the automation request exactly the models downstream of the files source, and the run it launches builds those and
no shop or NeoWs model. Expected sets come from the asset graph, not from a list."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from extract.files.source import DEMO_DROPS
from orchestration.definitions import load_definitions
from orchestration.lib.automation import AUTOMATION_SENSOR, model_automation_condition, requested_keys, run_requested
from orchestration.lib.environment import resolve
from orchestration.pipeline import run_pipeline
from tests.support import use_platform_env

SHARE_PRICES = dg.AssetKey(["raw_files", "share_prices"])
NEW_FILE = "2018-01-24.csv"
NEW_ROWS = [("2018/10/16", "255.5000"), ("2018/10/17", "254.2500")]  # trading dates no demo file has


@dataclass
class Automated:
    defs: dg.Definitions
    after_run: set[dg.AssetKey]  # what the automation requests right after `elt run`
    again: set[dg.AssetKey]  # ... and on the next tick
    after_empty_orders: set[dg.AssetKey]  # after a scheduled orders load that found nothing new
    orders_metadata: dict  # that load's materialization metadata of raw_shop/orders
    after_new_file: set[dg.AssetKey]  # after the drop sensor's run loaded a new file
    built: set[dg.AssetKey]  # what the run the automation launched materialized
    run_success: bool
    settled: set[dg.AssetKey]  # the tick after that run
    share_price_dates: int


def _dbt_models(defs: dg.Definitions) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return dg.AssetSelection.tag("dagster/kind/dbt", "").resolve(graph) & graph.materializable_asset_keys


def _downstream(defs: dg.Definitions, *roots: dg.AssetKey) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return dg.AssetSelection.assets(*roots).downstream().resolve(graph) - set(roots)


@pytest.fixture(scope="module")
def automated(tmp_path_factory: pytest.TempPathFactory) -> Automated:
    data_dir = tmp_path_factory.mktemp("automation")
    drops = data_dir / "drops"
    shutil.copytree(DEMO_DROPS, drops)
    with pytest.MonkeyPatch.context() as monkeypatch, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, data_dir / "data", ELT_FILES_DROP_DIR=str(drops))
        first = run_pipeline(instance=instance, log_level="WARNING")
        assert first.ok, (first.runs, first.failed_steps, first.checks_failed)
        defs = load_definitions()

        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        after_run = requested_keys(defs, tick)
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        again = requested_keys(defs, tick)

        # the intraday orders schedule's job runs with nothing new in the shop: Sling re-reads the row at its
        # high-water mark, the load materializes, and no model may wake for it
        orders = defs.resolve_job_def("shop_orders").execute_in_process(instance=instance, raise_on_error=False)
        assert orders.success
        [orders_event] = [
            event.materialization.metadata
            for event in orders.get_asset_materialization_events()
            if event.asset_key == dg.AssetKey(["raw_shop", "orders"])
        ]
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        after_empty_orders = requested_keys(defs, tick)

        # a new file arrives: the drop sensor registers it and requests its run, which loads it (as in prod)
        header = '"date","share_price","amount","spend","shift","spread"\n'
        lines = "".join(f'"{day}","{price}","1.0000","1.0000","1.0000","1.0000"\n' for day, price in NEW_ROWS)
        (drops / NEW_FILE).write_text(header + lines)
        sensor = defs.get_sensor_def("share_price_drops_sensor")
        [request] = sensor(dg.build_sensor_context(instance=instance, resources=defs.resources)).run_requests
        assert request.partition_key == NEW_FILE
        load = defs.resolve_job_def(request.job_name or "files_load").execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )
        assert load.success

        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        after_new_file = requested_keys(defs, tick)
        launched = run_requested(defs, instance, after_new_file)
        built = {event.asset_key for event in launched.get_asset_materialization_events()}
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        settled = requested_keys(defs, tick)

        with duckdb.connect(resolve().warehouse, read_only=True) as con:
            dates = con.sql("select count(*) from marts.fct_share_prices_daily").fetchone()[0]
    return Automated(
        defs,
        after_run,
        again,
        after_empty_orders,
        {key: value.value for key, value in orders_event.items()},
        after_new_file,
        built,
        launched.success,
        settled,
        dates,
    )


def test_every_dbt_model_has_the_automation_condition_and_no_cron_builds_them(automated):
    defs = automated.defs
    graph = defs.resolve_asset_graph()
    models = _dbt_models(defs)
    assert len(models) >= 10
    expected = model_automation_condition().get_label()
    assert all(graph.get(key).automation_condition.get_label() == expected for key in models)
    # extract assets keep their schedules and sensor: no automation condition of their own
    extract = {key for key in graph.materializable_asset_keys if key.path[0].startswith("raw_")}
    assert extract and not any(graph.get(key).automation_condition for key in extract)
    dbt_jobs = {job.name for job in defs.jobs or [] if getattr(job, "name", None) == "dbt_build"}
    assert not [s.name for s in defs.schedules or [] if getattr(s, "job_name", None) in dbt_jobs]


def test_automation_sensor_runs_in_prod_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from orchestration.defs.dbt.schedules import schedules

    prod = tmp_path / "prod.duckdb"
    statuses = {}
    for env_name, variables in {"dev": {}, "branch": {"ELT_BRANCH_ID": "7"}, "prod": {}}.items():
        use_platform_env(monkeypatch, tmp_path / env_name, ELT_ENV=env_name, ELT_PROD_DATABASE=str(prod), **variables)
        [sensor] = schedules().sensors
        assert isinstance(sensor, dg.AutomationConditionSensorDefinition) and sensor.name == AUTOMATION_SENSOR
        statuses[env_name] = sensor.default_status
    assert statuses == {
        "dev": dg.DefaultSensorStatus.STOPPED,
        "branch": dg.DefaultSensorStatus.STOPPED,
        "prod": dg.DefaultSensorStatus.RUNNING,
    }


def test_with_no_new_data_the_automation_launches_no_model(automated):
    assert automated.after_run == set()
    assert automated.again == set()


def test_an_orders_load_that_found_nothing_new_wakes_no_model(automated):
    # nothing past the high-water mark: Sling did not start, and the load still materialized, with nothing new
    assert automated.orders_metadata["rows_loaded"] == 0
    assert "Sling did not start" in automated.orders_metadata["window"]
    assert automated.orders_metadata["rows_changed"] == 0
    assert automated.after_empty_orders == set()


def test_a_new_file_requests_exactly_the_share_price_models_downstream_of_it(automated):
    defs = automated.defs
    downstream = _downstream(defs, SHARE_PRICES)  # the models, and a step after them (the publish) if any
    assert len(downstream & _dbt_models(defs)) >= 3  # staging, intermediate, mart
    assert automated.after_new_file == downstream
    graph = defs.resolve_asset_graph()
    other_sources = [key for key in graph.materializable_asset_keys if key.path[0] in ("raw_shop", "raw_nasa")]
    other_models = _downstream(defs, *other_sources) & _dbt_models(defs)
    assert len(other_models) >= 6 and not automated.after_new_file & other_models


def test_the_launched_run_builds_only_those_models_with_the_new_rows(automated):
    assert automated.run_success
    assert automated.built == automated.after_new_file
    demo_dates = {row.split(",")[0] for path in DEMO_DROPS.glob("*.csv") for row in path.read_text().splitlines()[1:]}
    assert automated.share_price_dates == len(demo_dates) + len(NEW_ROWS)
    assert automated.settled == set()
