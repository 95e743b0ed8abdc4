"""The `automation` stages: what declarative automation costs when little or nothing is new, against a full Dagster
run of the whole graph (`elt run`'s code path) measured in the same benchmark run.

One cycle is what prod does between two loads: the intraday orders load its schedule launches (`shop_orders`),
one tick of the automation conditions (`dg.evaluate_automation_conditions`, the evaluation the automation sensor
runs), and one run of exactly the assets the tick requested (dagster-dbt builds them as `dbt build --select`).

- `automation_noop`: nothing new in PostgreSQL: the load lands no rows and the tick requests nothing.
- `automation_orders`: +1% orders: the load lands them and the tick requests the shop models downstream of
  `raw_shop/orders` (and the publish step after them, where one exists), nothing else.
- `wap_publish`: the publish step of that run (the step of Write-Audit-Publish whose key names `publish`), when
  one ran; otherwise the row says `n/a: no publish step`.

Every side loads the definitions before its clock starts (a code server has them loaded) and runs in process on a
local Dagster instance. The full run leaves its warehouse, instance and the cursor of its first tick in a snapshot
that each cycle starts from.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from benchmarks.stages import _enter, check_graph, environment

CURSOR_FILE = "automation_cursor.json"
PUBLISH_FILE = "publish_seconds.json"
NO_PUBLISH = "n/a: no publish step"


def _instance(run_dir: Path):
    import dagster as dg

    (run_dir / "dagster").mkdir(exist_ok=True)
    return dg.DagsterInstance.local_temp(str(run_dir / "dagster"), overrides={"telemetry": {"enabled": False}})


def full_run(
    run_dir: Path, snapshot: Path, extra: Mapping[str, str], recorded_dir: Path, expected: Mapping[str, int]
) -> tuple[float, int, str]:
    """The reference: every asset once through `run_pipeline` on a fresh instance, timed after the definitions
    load. Then one tick (not timed) establishes the automation cursor, and the folder becomes the snapshot."""
    from extract.nasa.replay import ReplayServer, recorded_days

    feed_days = sorted(recorded_days(recorded_dir))
    with ReplayServer(recorded_dir) as replay:
        _enter(run_dir, {**extra, "ELT_NASA_BASE_URL": replay.base_url})
        import dagster as dg
        from dagster_shared.serdes import serialize_value

        from orchestration.definitions import load_definitions
        from orchestration.lib.automation import requested_keys
        from orchestration.pipeline import run_pipeline

        defs = load_definitions()
        instance = _instance(run_dir)
        start = time.perf_counter()
        summary = run_pipeline(instance=instance, log_level="WARNING", partitions={"raw_nasa/asteroids": feed_days})
        seconds = time.perf_counter() - start
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        if requested := requested_keys(defs, tick):
            raise RuntimeError(f"right after a full run the automation requested {sorted(map(str, requested))}")
        (run_dir / CURSOR_FILE).write_text(serialize_value(tick.cursor))
        instance.dispose()
    failed = sorted(set(summary.failed_steps))
    rows, note = check_graph(
        run_dir / "warehouse.duckdb", expected, f"steps failed: {', '.join(failed)}" if failed else ""
    )
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(run_dir, snapshot)
    return seconds, rows, note


def _step_seconds(instance, run_id: str, word: str) -> float | None:
    """Seconds between the start and the success of the run's step whose key contains `word`, if it ran (from the
    instance's event log: the timestamps live on its entries, not on the events a result holds)."""
    import dagster as dg

    entries = instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS})
    started: dict[str, float] = {}
    for entry in entries:
        step = entry.step_key or ""
        if word not in step:
            continue
        if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
            started[step] = entry.timestamp
        elif step in started:
            return entry.timestamp - started[step]
    return None


def cycle(
    run_dir: Path, snapshot: Path, extra: Mapping[str, str], expected: Mapping[str, int]
) -> tuple[float, int, str]:
    """One cycle from the snapshot, timed: the orders load, one tick, the run of what it requested. The seconds of
    that run's publish step (None without one) go to `<run_dir>/publish_seconds.json` (`publish_seconds`)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(snapshot, run_dir)
    os.environ.update(environment(run_dir, extra))
    import dagster as dg
    from dagster_shared.serdes import deserialize_value

    from orchestration.definitions import load_definitions
    from orchestration.defs.shop.schedules import SHOP_ORDERS_JOB
    from orchestration.lib.automation import requested_keys, run_requested

    defs = load_definitions()
    instance = _instance(run_dir)
    cursor = deserialize_value((run_dir / CURSOR_FILE).read_text())
    start = time.perf_counter()
    load = defs.resolve_job_def(SHOP_ORDERS_JOB).execute_in_process(instance=instance, raise_on_error=False)
    loaded = time.perf_counter()
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    requested = requested_keys(defs, tick)
    ticked = time.perf_counter()
    launched = run_requested(defs, instance, requested) if requested else None
    seconds = time.perf_counter() - start
    split = f"load {loaded - start:.1f} s, tick {ticked - loaded:.1f} s, run {start + seconds - ticked:.1f} s"
    publish = _step_seconds(instance, launched.run_id, "publish") if launched is not None else None
    instance.dispose()
    problems = [f"{SHOP_ORDERS_JOB} failed"] if not load.success else []
    if launched is not None and not launched.success:
        problems.append("the automation's run failed")
    built = sorted(key.to_user_string() for key in requested)
    note = "; ".join([*problems, split, f"automation built {len(built)}: {', '.join(built) or 'nothing'}"])
    (run_dir / PUBLISH_FILE).write_text(json.dumps(publish))
    rows, note = check_graph(run_dir / "warehouse.duckdb", expected, note)
    return seconds, rows, note


def publish_seconds(run_dir: Path) -> float | None:
    """The publish step's seconds in the last cycle run in `run_dir` (None: no publish step ran)."""
    path = run_dir / PUBLISH_FILE
    return json.loads(path.read_text()) if path.is_file() else None
