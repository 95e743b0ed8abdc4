"""The pipeline runner: one whole-pipeline pass through Dagster, in this process, with the loaded definitions.

It knows no slice. From the loaded definitions it plans, for each partitioned asset, its pending partitions (the
function the asset names in its metadata, orchestration/lib/planning.py) as one run per contiguous range (or per
partition, without a single-run backfill policy), then one run of every unpartitioned asset (`elt_all`). `elt run`
and the benchmark call `run_pipeline`; the schedules and sensors launch the same jobs in production.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.environment import Environment, resolve
from orchestration.lib.instance import prepare_dagster_home
from orchestration.lib.planning import PartitionedAssets, PlanContext, pending_partitions_finder
from orchestration.lib.runs import one_runner, owner_tags, reap_orphaned_runs, wait_for_pool

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class RunSummary:
    success: bool
    failed_steps: list[str]
    checks_passed: int
    checks_failed: list[str]
    table_rows: list[tuple[str, int]]
    warehouse: str
    runs: list[str] = field(default_factory=list)  # what each Dagster run loaded, in order

    @property
    def ok(self) -> bool:
        return self.success and not self.checks_failed


@dataclass(frozen=True)
class PlannedRun:
    job: dg.UnresolvedAssetJobDefinition
    what: str  # for the summary: `<asset key> <first partition>..<last partition>`
    tags: dict[str, str]


class RunWatcher:
    """What `run_pipeline` tells a caller that shows progress (`elt run`: orchestration/run_output.py) as the pass
    goes. Each method does nothing here; a watcher overrides the ones it needs."""

    def planned(self, defs: dg.Definitions, runs: Sequence[PlannedRun]) -> None:
        """The loaded definitions and the runs of this pass, before the first one starts."""

    def starting(self, run: PlannedRun, run_id: str) -> None:
        """`run` is next (it may still wait for its pool slot); its events will carry `run_id`."""

    def event(self, entry: dg.EventLogEntry) -> None:
        """Every event and log message of a run, as Dagster stores it (step successes and failures,
        materializations, asset check evaluations, log lines), while the run goes on."""


def warehouse_row_counts(location: str) -> list[tuple[str, int]]:
    """Rows in every raw table and mart (dlt's bookkeeping tables left out)."""
    import duckdb

    with duckdb.connect(location, read_only=True) as con:
        tables = con.sql(
            """
            select table_schema, table_name from information_schema.tables
            where table_catalog = current_database()
              and ((table_schema like 'raw\\_%' escape '\\' and table_schema not like '%\\_staging' escape '\\')
                   or table_schema = 'marts')
              and table_name not like '\\_dlt\\_%' escape '\\'
            order by table_schema like 'raw%' desc, table_schema, table_name
            """
        ).fetchall()
        return [
            (f"{schema}.{table}", con.sql(f'select count(*) from "{schema}"."{table}"').fetchone()[0])
            for schema, table in tables
        ]


def contiguous_ranges(keys: Sequence[str], wanted: Collection[str]) -> list[tuple[str, str]]:
    """The wanted keys as (first, last) runs of neighbours in `keys`' order: one Dagster run per range."""
    ranges: list[tuple[str, str]] = []
    start = previous = None
    for key in keys:
        if key in wanted:
            start, previous = start or key, key
        elif start is not None:
            ranges.append((start, previous))
            start = None
    if start is not None:
        ranges.append((start, previous))
    return ranges


def partitioned_assets(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The partitioned asset definitions, by op name: the order `elt run` loads them in."""
    graph = defs.resolve_asset_graph()
    return sorted(
        {graph.get(key).assets_def for key in graph.materializable_asset_keys if graph.get(key).partitions_def},
        key=lambda assets_def: assets_def.node_def.name,
    )


def plan_runs(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    env: Environment,
    partitions: Mapping[str, Sequence[str]] | None = None,
    selection: dg.AssetSelection | None = None,
) -> list[PlannedRun]:
    """The runs of one whole-pipeline pass. `partitions` replaces the pending partitions of an asset (by key string,
    e.g. `{"raw_x/events": [...]}`: the benchmark's generated days); `selection` limits the pass to some
    assets (e.g. every extract asset and no dbt model)."""
    from orchestration.definitions import ALL_ASSETS_JOB, elt_all

    graph = defs.resolve_asset_graph()
    selected = selection.resolve(graph) if selection is not None else None
    planned: list[PlannedRun] = []
    for assets_def in partitioned_assets(defs):
        if selected is not None and not set(assets_def.keys) & selected:
            continue
        partitions_def = assets_def.partitions_def
        name = assets_def.node_def.name
        # the asset and its own checks; checks that other ops run (dbt's source tests) run with those ops
        job = dg.define_asset_job(
            f"elt_run__{name}",
            selection=dg.AssetSelection.assets(*assets_def.keys).without_checks()
            | dg.AssetSelection.checks(*assets_def.check_keys),
        )
        for key in sorted(assets_def.keys, key=lambda key: key.to_user_string()):
            override = (partitions or {}).get(key.to_user_string())
            if override is not None:
                pending = list(override)
            else:
                context = PlanContext(instance, env, defs.resources, key, partitions_def)
                pending = list(pending_partitions_finder(assets_def.specs_by_key[key].metadata)(context))
            if pending:
                break
        if not pending:
            continue
        every_key = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        single_run = assets_def.backfill_policy and assets_def.backfill_policy.max_partitions_per_run is None
        if single_run:
            for first, last in contiguous_ranges(every_key, set(pending)):
                what = f"{name} {first}..{last}" if first != last else f"{name} {first}"
                planned.append(PlannedRun(job, what, {RANGE_START: first, RANGE_END: last}))
        else:
            planned += [PlannedRun(job, f"{name} {key}", {"dagster/partition": key}) for key in pending]
    if selection is None:
        planned.append(PlannedRun(elt_all, f"{ALL_ASSETS_JOB}: every unpartitioned asset", {}))
    else:
        rest = dg.define_asset_job(
            "elt_run__selected", selection=(dg.AssetSelection.all() - PartitionedAssets()) & selection
        )
        planned.append(PlannedRun(rest, "the selected unpartitioned assets", {}))
    return planned


def _say(message: str) -> None:
    print(f"elt: {message}", file=sys.stderr, flush=True)


def run_pipeline(
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
    partitions: Mapping[str, Sequence[str]] | None = None,
    selection: dg.AssetSelection | None = None,
    say: Callable[[str], None] = _say,
    watcher: RunWatcher | None = None,
) -> RunSummary:
    """Materialize the whole asset graph once, in this process, for the environment the variables resolve to:
    the pending partitions of each partitioned asset, then every unpartitioned asset (the shop tables and dbt).

    One pass at a time per instance (`one_runner`); runs left in progress by a process that died are marked failed
    and their pool slots freed first; each run starts once the warehouse pool has a free slot (`wait_for_pool`
    says who holds it). Ctrl-C / SIGTERM during a run fail that run (Dagster releases its slot) and end the pass
    with KeyboardInterrupt. A `watcher` hears each run's events as they happen."""
    from orchestration.definitions import load_definitions

    env = resolve()
    if instance is None:
        prepare_dagster_home(env.dagster_home)
        instance = dg.DagsterInstance.get()
    with one_runner(env.dagster_home, say):
        reap_orphaned_runs(instance, say)
        defs = load_definitions()
        planned = plan_runs(defs, instance, env, partitions, selection)
        jobs = {run.job.name: run.job for run in planned}
        added = [job for job in jobs.values() if not _has_job(defs, job)]
        runnable = dg.Definitions.merge(defs, dg.Definitions(jobs=added))

        watcher = watcher or RunWatcher()
        watcher.planned(runnable, planned)
        success, failed_steps, evaluations, runs = True, [], [], []
        for run in planned:
            run_id = str(uuid.uuid4())  # chosen here so the watcher hears the run's first event
            watcher.starting(run, run_id)
            instance.add_event_listener(run_id, watcher.event)  # called in this process as each event is stored
            wait_for_pool(instance, WAREHOUSE_POOL, say)
            result = runnable.resolve_job_def(run.job.name).execute_in_process(
                instance=instance,
                run_id=run_id,
                raise_on_error=False,
                tags={**run.tags, **owner_tags()},
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            )
            if was_interrupted(result):
                raise KeyboardInterrupt(f"interrupted during {run.what} (run {result.run_id}, marked failed)")
            runs.append(f"{run.what}: {'ok' if result.success else 'FAILED'}")
            success &= result.success
            failed_steps += [event.step_key for event in result.all_events if event.is_step_failure]
            evaluations += result.get_asset_check_evaluations()
    checks_failed = sorted(f"{'/'.join(e.asset_key.path)}: {e.check_name}" for e in evaluations if not e.passed)
    rows = warehouse_row_counts(env.warehouse) if env.is_motherduck or Path(env.warehouse).exists() else []
    return RunSummary(
        success=success,
        failed_steps=failed_steps,
        checks_passed=sum(1 for e in evaluations if e.passed),
        checks_failed=checks_failed,
        table_rows=rows,
        warehouse=env.warehouse,
        runs=runs,
    )


_INTERRUPTS = {"DagsterExecutionInterruptedError", "KeyboardInterrupt"}


def was_interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """True when Ctrl-C / SIGTERM ended the run: Dagster records an unexpected termination, or a step failed on
    an error caused by the interrupt (a library may wrap it: DuckDB answers `Query interrupted`, dlt wraps that)."""
    from dagster._core.events import RunFailureReason

    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            if getattr(data, "failure_reason", None) == RunFailureReason.UNEXPECTED_TERMINATION:
                return True
        elif event.is_step_failure and _caused_by_interrupt(getattr(data, "error", None)):
            return True
    return False


def _caused_by_interrupt(error) -> bool:
    seen = 0
    stack = [error]
    while stack and seen < 50:
        error = stack.pop()
        if error is None:
            continue
        seen += 1
        if error.cls_name in _INTERRUPTS:
            return True
        stack += [error.cause, error.context]
    return False


def _has_job(defs: dg.Definitions, job: dg.UnresolvedAssetJobDefinition) -> bool:
    return any(getattr(existing, "name", None) == job.name for existing in defs.jobs or [])
