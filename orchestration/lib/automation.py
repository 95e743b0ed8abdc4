"""Shared rules for what runs on its own: schedules and sensors run by themselves only in prod, dbt models
materialize when what they read has new data, and marts say when they are stale.

- Loads (the extract assets) keep their schedules and the drop sensor.
- Every dbt model has `model_automation_condition()`: Dagster's `eager()` (a dependency updated since the model was
  last requested, none missing, none in progress), counting only updates that landed rows, and no dependency whose
  latest materialization failed a blocking check. The automation condition sensor (`automation_sensor`) evaluates
  it and launches one run of exactly the models it requests; dagster-dbt turns that asset selection into
  `dbt build --select`, so a run builds only what is downstream of what changed.
- A mart's freshness policy comes from the dbt `freshness:` of the sources it reads (`upstream_freshness_policy`),
  an extract asset's from the `freshness:` of the dbt sources it lands (`source_freshness_policies`), so the UI
  shows a load that stopped running and every mart it feeds as stale.
"""

import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg

from orchestration.lib.environment import Environment

AUTOMATION_SENSOR = "dbt_automation_sensor"


def default_schedule_status(env: Environment) -> dg.DefaultScheduleStatus:
    """Schedules start RUNNING in prod; in dev and branch they exist (and can be started by hand) but are off."""
    return dg.DefaultScheduleStatus.RUNNING if env.name == "prod" else dg.DefaultScheduleStatus.STOPPED


def default_sensor_status(env: Environment) -> dg.DefaultSensorStatus:
    """Sensors start RUNNING in prod only, like schedules."""
    return dg.DefaultSensorStatus.RUNNING if env.name == "prod" else dg.DefaultSensorStatus.STOPPED


class LoadedNewRows(dg.AutomationCondition):
    """True for an asset whose latest materialization landed rows: its `rows_changed` metadata (the shop's
    incremental streams: rows past the previous high-water mark, since Sling's `>=` re-reads the rows at the mark)
    or else its `rows_loaded` (what the dlt and Sling loads report) is above zero, or both are absent (a dbt model,
    or a load that does not count). A scheduled load that found nothing new still materializes; with this, it does
    not wake the models downstream.
    Partitions of a partitioned load are materialized only when loaded, so they count as new."""

    @property
    def name(self) -> str:
        return "loaded_new_rows"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        if context.partitions_def is not None or context.candidate_subset.is_empty:
            return dg.AutomationResult(context, context.candidate_subset)
        event = context.asset_graph_view.instance.get_latest_materialization_event(context.key)
        metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
        # an incremental load that re-reads its high-water mark says what was really new in `rows_changed`
        rows = metadata.get("rows_changed", metadata.get("rows_loaded"))
        landed = rows is None or not isinstance(rows.value, int) or rows.value > 0
        return dg.AutomationResult(context, context.candidate_subset if landed else context.get_empty_subset())


def model_automation_condition() -> dg.AutomationCondition:
    """When a dbt model materializes on its own: Dagster's `eager()` (a dependency updated since the model was last
    requested, none missing, none in progress), where an update counts only when it landed rows
    (`LoadedNewRows`), and not while a dependency's latest materialization failed a blocking check (a failed dbt
    test, a refused drop file); new data upstream clears that, as a check counts against the materialization it ran
    on."""
    condition = dg.AutomationCondition
    dep_has_new_rows = condition.any_deps_match(
        (condition.newly_updated() & LoadedNewRows()) | condition.will_be_requested()
    ).with_label("any_deps_loaded_new_rows")
    blocked = condition.any_deps_match(
        condition.any_checks_match(condition.check_failed(), blocking_only=True)
    ).with_label("any_deps_failed_blocking_check")
    return (
        condition.in_latest_time_window()
        & (condition.newly_missing() | dep_has_new_rows).since_last_handled()
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
        & ~blocked
    ).with_label("eager on new rows, unless a blocking check failed upstream")


def automation_sensor(env: Environment, minimum_interval_seconds: int = 60) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the automation conditions (every asset that has one: the dbt models) and launches
    what they request; running by default in prod only, like the other sensors."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=default_sensor_status(env),
        use_user_code_server=True,  # `LoadedNewRows` is Python: evaluated in the code server, not the daemon
        minimum_interval_seconds=minimum_interval_seconds,
        description="Materializes dbt models when what they read has new data (declarative automation).",
    )


_PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _window(threshold: Mapping[str, Any] | None) -> timedelta | None:
    if not threshold or not threshold.get("count") or not threshold.get("period"):
        return None
    return threshold["count"] * _PERIODS[threshold["period"]]


def _upstream_sources(manifest: Mapping[str, Any], unique_id: str) -> set[str]:
    parents, seen, sources = manifest.get("parent_map", {}), set(), set()
    stack = [unique_id]
    while stack:
        node = stack.pop()
        for parent in parents.get(node, []):
            if parent in seen:
                continue
            seen.add(parent)
            (sources.add if parent.startswith("source.") else stack.append)(parent)
    return sources


def _policy(freshnesses: list[Mapping[str, Any]]) -> dg.FreshnessPolicy | None:
    """The tightest time-window policy over dbt `freshness:` blocks: it fails after the tightest `error_after` (or
    `warn_after` where a block sets no error), and warns after the tightest `warn_after` when that is earlier. None
    when no block sets either."""
    fails, warns = [], []
    for freshness in freshnesses:
        warn, error = _window(freshness.get("warn_after")), _window(freshness.get("error_after"))
        if error or warn:
            fails.append(error or warn)
        if warn:
            warns.append(warn)
    if not fails:
        return None
    fail = min(fails)
    warn = min(warns) if warns and min(warns) < fail else None
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


def upstream_freshness_policy(manifest: Mapping[str, Any], unique_id: str) -> dg.FreshnessPolicy | None:
    """A mart's policy: the tightest dbt `freshness:` of every source upstream of the node (see `_policy`). None
    when no upstream source declares freshness."""
    sources = _upstream_sources(manifest, unique_id)
    return _policy([manifest["sources"][source_id].get("freshness") or {} for source_id in sources])


def source_freshness_policies(
    manifest: Mapping[str, Any], asset_key_of: Callable[[Mapping[str, Any]], dg.AssetKey]
) -> dict[dg.AssetKey, dg.FreshnessPolicy]:
    """Each extract asset's policy, from the dbt `freshness:` of the sources it lands (`asset_key_of`: the dbt
    translator's key of a source, which is the extract asset's key). A dlt parent and its child tables share one
    asset; a child table with `freshness: null` leaves the parent's policy alone. In Dagster the policy counts from
    the asset's last materialization, so a load that ran and found nothing new is still fresh; dbt's source
    freshness (`loaded_at_field`) is the check on the data itself."""
    blocks: dict[dg.AssetKey, list[Mapping[str, Any]]] = {}
    for source in manifest.get("sources", {}).values():
        blocks.setdefault(asset_key_of(source), []).append(source.get("freshness") or {})
    return {key: policy for key, found in blocks.items() if (policy := _policy(found))}


def with_source_freshness(defs: dg.Definitions, policies: Mapping[dg.AssetKey, dg.FreshnessPolicy]) -> dg.Definitions:
    """`defs` with each extract asset given its policy from `source_freshness_policies`, unless it sets its own."""

    def add_policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.freshness_policy is not None or spec.key not in policies:
            return spec
        return spec.replace_attributes(freshness_policy=policies[spec.key])

    with warnings.catch_warnings():  # `map_asset_specs` is marked preview in Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=add_policy)


def requested_keys(defs: dg.Definitions, evaluation: dg.EvaluateAutomationConditionsResult) -> set[dg.AssetKey]:
    """The assets an evaluation of the automation conditions requested (what the sensor would launch)."""
    graph = defs.resolve_asset_graph()
    return {key for key in graph.materializable_asset_keys if evaluation.get_num_requested(key)}


def run_requested(
    defs: dg.Definitions, instance: dg.DagsterInstance, keys: set[dg.AssetKey], **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """Run the requested assets (and their checks) in this process, as one run, the way the sensor launches them:
    dagster-dbt turns the selection into `dbt build --select` of exactly those models."""
    job = dg.define_asset_job("automation_requested", selection=dg.AssetSelection.assets(*keys))
    runnable = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    return runnable.resolve_job_def(job.name).execute_in_process(
        instance=instance, raise_on_error=False, tags={"dagster/from_automation_condition": "true"}, **kwargs
    )
