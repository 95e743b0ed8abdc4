"""The orphaned-runs sensor: every minute, the daemon ends the dbt and Sling processes a dead run left running (they
hold the warehouse's lock), marks failed each run whose process is gone (SIGKILL, out of memory, a closed laptop
lid) and frees its `duckdb_warehouse` pool slot, so the next run does not wait forever.

Dagster's run monitoring does this for run launchers that can check their workers (Docker, Kubernetes); the local
instance of `elt dev` launches run workers as plain processes, which it cannot check. `elt run` does the same
before each pass (orchestration/lib/runs.py); this sensor covers the runs of `elt dev` / `dagster dev`. It is on in
every environment: it only judges runs of this machine (a local instance, or runs tagged with this host).
"""

import dagster as dg

from orchestration.lib.runs import reap_orphaned_runs


@dg.sensor(
    name="orphaned_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed the runs whose process is gone and frees their pool slots.",
)
def orphaned_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_orphaned_runs(context.instance, say=context.log.warning)
    if reaped:
        return dg.SkipReason(f"marked failed (process gone, slots freed): {', '.join(reaped)}")
    return dg.SkipReason("every run in progress has a live process")
