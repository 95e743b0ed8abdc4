"""Declarative automation of the dbt models, on a real Dagster instance, real DuckDB and real dbt, whatever sources
are present: on a copy of the session's demo `elt run`, nothing new launches no model; a load that says it found
nothing new wakes no model; a load that landed rows makes the automation request exactly the assets downstream of
it, and the run it launches builds those and nothing else. The extract asset and every expected set come from the
asset graph, not from a list."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import load_definitions
from orchestration.lib.automation import AUTOMATION_SENSOR, model_automation_condition, requested_keys, run_requested
from tests.support import use_platform_env

DBT = dg.AssetSelection.tag("dagster/kind/dbt", "")
# the extract assets: every root of the graph that dbt does not build
EXTRACT = (dg.AssetSelection.all().roots() - DBT).without_checks()


def _dbt_models(defs: dg.Definitions) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return DBT.resolve(graph) & graph.materializable_asset_keys


def _downstream(defs: dg.Definitions, *roots: dg.AssetKey) -> set[dg.AssetKey]:
    return dg.AssetSelection.assets(*roots).downstream().resolve(defs.resolve_asset_graph()) - set(roots)


def _extract_assets(defs: dg.Definitions) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return EXTRACT.resolve(graph) & graph.materializable_asset_keys


def _cheapest_extract_asset(defs: dg.Definitions, partitioned: bool | None = None) -> dg.AssetKey | None:
    """The extract asset with the fewest dbt models downstream (at least one), unpartitioned first; with
    `partitioned=False` an unpartitioned one or None."""
    graph, models = defs.resolve_asset_graph(), _dbt_models(defs)
    candidates = [
        (graph.get(key).partitions_def is not None, len(_downstream(defs, key) & models), key.to_user_string(), key)
        for key in _extract_assets(defs)
        if _downstream(defs, key) & models
    ]
    if partitioned is False:
        candidates = [candidate for candidate in candidates if not candidate[0]]
    return min(candidates)[-1] if candidates else None


def _reported_load(instance: dg.DagsterInstance, key: dg.AssetKey, **metadata: int) -> None:
    """A materialization of extract asset `key` with `metadata`, as its load would record it (of its latest loaded
    partition when it is partitioned)."""
    partitions = sorted(instance.get_materialized_partitions(key))
    instance.report_runless_asset_event(
        dg.AssetMaterialization(key, partition=partitions[-1] if partitions else None, metadata=metadata)
    )


@dataclass
class Automated:
    defs: dg.Definitions
    after_run: set[dg.AssetKey]  # what the automation requests right after `elt run`
    again: set[dg.AssetKey]  # ... and on the next tick
    quiet_load: dg.AssetKey | None  # an unpartitioned extract asset whose loads said they found nothing new
    after_nothing_loaded: set[dg.AssetKey]  # after its load that landed no rows (`rows_loaded` 0)
    after_nothing_changed: set[dg.AssetKey]  # after its load that re-read rows, none of them new (`rows_changed` 0)
    loaded: dg.AssetKey  # the extract asset whose load then landed rows
    after_new_rows: set[dg.AssetKey]  # what the automation requested for it
    built: set[dg.AssetKey]  # what the run the automation launched materialized
    run_success: bool
    settled: set[dg.AssetKey]  # the tick after that run


@pytest.fixture(scope="module")
def automated(demo_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Automated]:
    """A copy of the session's demo run (warehouse and Dagster instance), ticked through the automation conditions
    as the sensor ticks them: after the run; after loads that found nothing new; after a load that landed rows; and
    after the run that tick launched."""
    data_dir = demo_run.copy_to(tmp_path_factory.mktemp("automation"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_platform_env(monkeypatch, data_dir)
        monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster"))
        with dg.DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
            defs = load_definitions()

            def tick(cursor: str | None = None) -> tuple[set[dg.AssetKey], str]:
                evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
                return requested_keys(defs, evaluation), evaluation.cursor

            after_run, cursor = tick()
            again, cursor = tick(cursor)

            # loads that found nothing new still materialize; their metadata says so, and no model may wake for it
            quiet = _cheapest_extract_asset(defs, partitioned=False)
            after_nothing_loaded = after_nothing_changed = set()
            if quiet is not None:
                _reported_load(instance, quiet, rows_loaded=0)
                after_nothing_loaded, cursor = tick(cursor)
                # an incremental load re-reads the rows at its high-water mark: `rows_changed` says none was new
                _reported_load(instance, quiet, rows_loaded=2, rows_changed=0)
                after_nothing_changed, cursor = tick(cursor)

            loaded = _cheapest_extract_asset(defs)
            assert loaded is not None, "no extract asset has a dbt model downstream"
            _reported_load(instance, loaded, rows_loaded=3)
            after_new_rows, cursor = tick(cursor)
            launched = run_requested(defs, instance, after_new_rows)
            built = {event.asset_key for event in launched.get_asset_materialization_events()}
            settled, cursor = tick(cursor)
            yield Automated(
                defs,
                after_run,
                again,
                quiet,
                after_nothing_loaded,
                after_nothing_changed,
                loaded,
                after_new_rows,
                built,
                launched.success,
                settled,
            )


def test_every_dbt_model_has_the_automation_condition_and_no_cron_builds_them(automated):
    defs = automated.defs
    graph = defs.resolve_asset_graph()
    models = _dbt_models(defs)
    assert models
    expected = model_automation_condition().get_label()
    assert all(graph.get(key).automation_condition.get_label() == expected for key in models)
    # extract assets keep their schedules and sensors: no automation condition of their own
    extract = _extract_assets(defs)
    assert extract and not any(graph.get(key).automation_condition for key in extract)
    scheduled = {
        schedule.name: defs.resolve_job_def(
            defs.resolve_schedule_def(schedule.name).job_name
        ).asset_layer.selected_asset_keys
        for schedule in defs.schedules or []
    }
    assert not {name: keys & models for name, keys in scheduled.items() if keys & models}


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


def test_a_load_that_found_nothing_new_wakes_no_model(automated):
    if automated.quiet_load is None:
        pytest.skip("every extract asset with a dbt model downstream is partitioned: a loaded partition is new data")
    assert _downstream(automated.defs, automated.quiet_load) & _dbt_models(automated.defs)
    assert automated.after_nothing_loaded == set()
    assert automated.after_nothing_changed == set()  # `rows_changed` counts before `rows_loaded`


def test_a_load_with_new_rows_requests_exactly_the_models_downstream_of_it(automated):
    defs = automated.defs
    downstream = _downstream(defs, automated.loaded)  # the models, and a step after them (the publish) if any
    assert downstream & _dbt_models(defs)
    assert automated.after_new_rows == downstream
    print(
        f"{automated.loaded.to_user_string()}: {len(downstream & _dbt_models(defs))} of "
        f"{len(_dbt_models(defs))} models requested"
    )


def test_the_launched_run_builds_only_those_models(automated):
    assert automated.run_success
    assert automated.built == automated.after_new_rows
    assert automated.settled == set()
