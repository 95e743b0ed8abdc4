"""The production topology as `elt serve` starts it: a code server, the webserver and the daemon over a PostgreSQL
instance (the local one `elt serve` starts from pgserver), ELT_ENV=prod on a temp prod warehouse, whatever sources
are present: the jobs, assets and schedules come from the definitions this process loads for the same environment.

One topology for the module; the tests run in order against it: two load jobs submitted through the webserver take
turns on the `duckdb_warehouse` pool; the rows they landed make the automation sensor (running in prod) request the
dbt models downstream, and that run is queued, launched by the daemon and publishes the models in prod; a run worker
killed with SIGKILL is marked failed (by the code server that started it; run monitoring's own check of the pid is
tested in test_deploy.py) and run retries re-run it with the row counts of one clean load; a schedule's cron tick
launches its job (slow: it waits for the first cron minute of any schedule, up to an hour); SIGTERM stops every
process and the PostgreSQL.
Shortened through real settings only: DAGSTER_DEQUEUE_INTERVAL_SECONDS.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest
from dagster_graphql import DagsterGraphQLClient

from extract.local_postgres import LocalPostgres
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.automation import AUTOMATION_SENSOR
from orchestration.lib.environment import REPO_ROOT
from orchestration.lib.runs import run_process
from tests.support import free_port, use_platform_env

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 300
# the schedule test waits for a real cron tick only when one is this close: the demo's schedules are hourly or daily,
# and a suite (CI included) must not sit for up to an hour on one test
SCHEDULE_WAIT_LIMIT_S = 5 * 60
DBT = dg.AssetSelection.tag("dagster/kind/dbt", "")
EXTRACT = (dg.AssetSelection.all().roots() - DBT).without_checks()  # every root of the graph dbt does not build
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass
class Topology:
    process: subprocess.Popen
    log: Path
    data_dir: Path
    prod: Path
    webserver_port: int
    started_at: datetime  # once the daemon runs: its scheduler ticks from here on
    defs: dg.Definitions = None  # type: ignore[assignment]  # loaded here for the same environment
    instance: dg.DagsterInstance = None  # type: ignore[assignment]

    def graphql(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.webserver_port)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(what: str, predicate, timeout_s: float, topology: Topology | None = None, every_s: float = 0.5):
    """Poll `predicate` (an observable state: a run's status, a line, a port) until it is true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if topology is not None and topology.process.poll() is not None:
            pytest.fail(f"elt serve exited ({topology.process.returncode}) waiting for {what}:\n{topology.output()}")
        time.sleep(every_s)
    logs = "" if topology is None else topology.output()[-3000:]
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def event_types(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        record.event_log_entry.dagster_event.event_type_value
        for record in instance.get_records_for_run(run_id, limit=10_000).records
        if record.event_log_entry.dagster_event is not None
    ]


def idle(instance: dg.DagsterInstance) -> bool:
    """No run queued or in progress (so the test may open the prod warehouse read-only)."""
    return not instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS))


def relation_rows(warehouse: Path, keys) -> dict[str, int | None]:
    """Rows of the relation `schema.table` of each asset key (None where there is none)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        present = set(con.sql("select table_schema, table_name from information_schema.tables").fetchall())
        return {
            key.to_user_string(): con.sql(f'select count(*) from "{key.path[0]}"."{key.path[-1]}"').fetchone()[0]
            if (key.path[0], key.path[-1]) in present
            else None
            for key in keys
        }


def prod_rows(topology: Topology, keys) -> dict[str, int | None]:
    wait_for("no run in progress", lambda: idle(topology.instance), 600, topology)
    return relation_rows(topology.prod, keys)


# ---------------------------------------------------------------- what the definitions offer


def _selected(defs: dg.Definitions, job: object) -> set[dg.AssetKey]:
    selection = getattr(job, "selection", None)
    return selection.resolve(defs.resolve_asset_graph()) if selection is not None else set()


def load_jobs(defs: dg.Definitions) -> dict[str, set[dg.AssetKey]]:
    """The jobs that load unpartitioned extract assets and nothing else (runnable without a partition), by name,
    with the assets each loads."""
    graph = defs.resolve_asset_graph()
    extract = EXTRACT.resolve(graph) & graph.materializable_asset_keys
    jobs = {job.name: _selected(defs, job) for job in defs.jobs or []}
    return {
        name: keys
        for name, keys in sorted(jobs.items())
        if keys and keys <= extract and not any(graph.get(key).partitions_def for key in keys)
    }


def two_load_jobs(defs: dg.Definitions) -> tuple[str, str]:
    """Two load jobs writing different assets when there are two, else one job twice; skips without one."""
    jobs = load_jobs(defs)
    if not jobs:
        pytest.skip("no job loads unpartitioned extract assets only")
    first, *others = jobs
    second = next((name for name in others if not jobs[name] & jobs[first]), first)
    return first, second


def models_fed_only_by(defs: dg.Definitions, loaded: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """The dbt models downstream of `loaded` whose every upstream extract asset is in `loaded`."""
    graph = defs.resolve_asset_graph()
    models = DBT.resolve(graph) & graph.materializable_asset_keys
    extract = EXTRACT.resolve(graph)
    downstream = dg.AssetSelection.assets(*loaded).downstream().resolve(graph) & models
    return {key for key in downstream if dg.AssetSelection.assets(key).upstream().resolve(graph) & extract <= loaded}


def landed_rows(instance: dg.DagsterInstance, keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """The assets whose latest materialization landed rows, as the models' automation condition reads it
    (orchestration/lib/automation.py `LoadedNewRows`): `rows_changed`, else `rows_loaded`, above zero or absent."""
    landed = set()
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            continue
        metadata = event.asset_materialization.metadata
        rows = metadata.get("rows_changed", metadata.get("rows_loaded"))
        if rows is None or not isinstance(rows.value, int) or rows.value > 0:
            landed.add(key)
    return landed


def runs_of(instance: dg.DagsterInstance, job_name: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=job_name)))


# ---------------------------------------------------------------- the topology


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("topology")
    data_dir, prod = root / "data", root / "prod" / "prod.duckdb"
    prod.parent.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DAGSTER_PG_", "ELT_", "DAGSTER_CLOUD_", "NASA_API_KEY", "MOTHERDUCK_TOKEN"))
        and key != "DAGSTER_HOME"
    }
    env |= {
        "ELT_ENV": "prod",
        "ELT_DATA_DIR": str(data_dir),
        "ELT_PROD_DATABASE": str(prod),
        "DAGSTER_DEQUEUE_INTERVAL_SECONDS": "1",
        "COLUMNS": "250",  # one line per message from rich
    }
    port = free_port()
    log = root / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "elt"), "serve", "--port", str(port), "--grpc-port", str(free_port())],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    topology = Topology(process, log, data_dir, prod, port, datetime.now(UTC))
    try:
        with pytest.MonkeyPatch.context() as patch:
            wait_for("the webserver", lambda: "webserver: http" in topology.output(), START_TIMEOUT_S, topology)
            wait_for("the webserver's /server_info", lambda: _answers(port), 120, topology)
            topology.started_at = datetime.now(UTC) + timedelta(minutes=1)  # the daemon's first iteration, at most
            # the definitions the code server loaded (after it, so the manifest is prepared once), to choose jobs
            use_platform_env(patch, root / "test_data", ELT_ENV="prod", ELT_PROD_DATABASE=str(prod))
            from orchestration.definitions import load_definitions

            topology.defs = load_definitions()
            pg_port = re.search(r"local PostgreSQL 127\.0\.0\.1:(\d+)/", topology.output()).group(1)
            password = (data_dir / "serve" / "postgres" / "password").read_text().strip()
            for name, value in {
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": pg_port,
                "DAGSTER_PG_USER": LocalPostgres.superuser,
                "DAGSTER_PG_PASSWORD": password,
                "DAGSTER_PG_DB": "dagster",
                "PGSSLMODE": "disable",
                "DAGSTER_DEQUEUE_INTERVAL_SECONDS": "1",
            }.items():
                patch.setenv(name, value)
            with dg.DagsterInstance.from_config(str(data_dir / "serve" / "dagster")) as instance:
                topology.instance = instance
                yield topology
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_the_instance_is_postgres_with_the_queue_pool_and_run_monitoring(topology):
    instance = topology.instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert type(instance.run_launcher).__name__ == "LocalProcessRunLauncher"
    assert instance.run_launcher.supports_check_run_worker_health
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    # the three processes, each a child of `elt serve`
    children = {" ".join(child.cmdline()) for child in psutil.Process(topology.process.pid).children()}
    assert any("code-server start" in cmd for cmd in children), children
    assert any("dagster-webserver" in cmd for cmd in children), children
    assert any("dagster-daemon run" in cmd for cmd in children), children


def test_two_warehouse_writers_take_turns_on_the_pool(topology):
    instance, client, defs = topology.instance, topology.graphql(), topology.defs
    jobs = two_load_jobs(defs)
    graph = defs.resolve_asset_graph()
    for name in jobs:  # every step of a load job writes the warehouse, so it is in the pool
        assert {frozenset(graph.get(key).pools or ()) for key in load_jobs(defs)[name]} == {frozenset({WAREHOUSE_POOL})}
    first, second = (client.submit_job_execution(name) for name in jobs)
    saw_waiting = False

    def both_done():
        nonlocal saw_waiting
        info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert info.limit == 1, info
        holders = {slot.run_id for slot in info.claimed_slots}
        others = {first, second} - holders
        # the other run waits: kept in the queue by the coordinator while the pool is full, or (launched) its step
        # pending a slot
        pending = {step.run_id for step in info.pending_steps if step.assigned_timestamp is None}
        queued = {run_id for run_id in others if instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED}
        saw_waiting |= bool(holders & {first, second}) and bool((pending | queued) & others)
        return finished(instance, first) and finished(instance, second)

    wait_for(f"both runs ({' and '.join(jobs)})", both_done, 600, topology, every_s=0.2)
    for run_id in (first, second):
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS, run_id
    windows = [pool_step_window(instance, run_id) for run_id in (first, second)]
    (start_a, end_a), (start_b, end_b) = sorted(windows)
    assert end_a <= start_b, f"the pool's steps overlapped: {windows}"
    assert saw_waiting, "no run was seen waiting for the duckdb_warehouse slot"


def pool_step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    """From the first step start to the last step end of a run (every step of these jobs is in the pool)."""
    records = instance.get_records_for_run(run_id, limit=10_000).records
    starts = [r.event_log_entry.timestamp for r in records if _is(r, "STEP_START")]
    ends = [r.event_log_entry.timestamp for r in records if _is(r, "STEP_SUCCESS")]
    assert starts and ends, run_id
    return min(starts), max(ends)


def _is(record, event_type: str) -> bool:
    event = record.event_log_entry.dagster_event
    return event is not None and event.event_type_value == event_type


def test_new_rows_make_the_automation_sensor_queue_a_run_that_the_daemon_launches_and_publishes(
    topology, published_prod
):
    """The loads of the test before landed rows: the automation sensor (running in prod, in the daemon) requests the
    models they feed, the run is queued, then launched, and the models land in prod with the rows a full prod build
    of the demo data has. Expected: every model whose upstream loads are all among them and all landed rows (a load
    that landed none wakes no model, orchestration/lib/automation.py)."""
    instance, defs = topology.instance, topology.defs
    if not all(runs_of(instance, name) for name in two_load_jobs(defs)):
        pytest.skip("the load runs of the pool test did not run")
    loaded = set().union(*(load_jobs(defs)[name] for name in two_load_jobs(defs)))
    models = models_fed_only_by(defs, landed_rows(instance, loaded))
    if not models:
        pytest.skip(f"no dbt model reads only what {sorted(key.to_user_string() for key in loaded)} landed")

    # what runs after the models to make them visible (the publish step of Write-Audit-Publish in prod)
    graph = defs.resolve_asset_graph()
    after_models = {
        key
        for key in dg.AssetSelection.assets(*models).downstream().resolve(graph) - DBT.resolve(graph)
        if graph.get(key).automation_condition is not None
    }

    def latest(key: dg.AssetKey) -> float:
        event = instance.get_latest_materialization_event(key)
        return event.timestamp if event else 0.0

    def built_by_the_sensor() -> list[dg.DagsterRun] | None:
        runs = [
            run
            for run in instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": AUTOMATION_SENSOR}))
            if run.is_finished
        ]
        built = {
            record.event_log_entry.dagster_event.asset_key
            for run in runs
            for record in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
        }
        if not models <= built:
            return None
        built_at = max(latest(key) for key in models)
        return runs if all(latest(key) > built_at for key in after_models) else None

    # the sensor ticks every 60 s; its runs build the models, then publish them
    runs = wait_for("the automation sensor's runs of the models", built_by_the_sensor, 600, topology, every_s=2)
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [(r.run_id, r.status) for r in runs]
    for run in runs:
        types = event_types(instance, run.run_id)
        assert types.index("PIPELINE_ENQUEUED") < types.index("PIPELINE_STARTING") < types.index("PIPELINE_START")
    record = instance.get_run_record_by_id(runs[0].run_id)
    print(f"automation run: queued -> models in prod {record.end_time - record.create_timestamp.timestamp():.1f} s")
    expected = relation_rows(published_prod, models)
    assert None not in expected.values(), expected
    assert prod_rows(topology, models) == expected


def test_a_killed_run_worker_is_marked_failed_and_the_retry_recovers_with_exact_row_counts(
    topology, demo_raw_warehouse
):
    instance, client, defs = topology.instance, topology.graphql(), topology.defs
    jobs = load_jobs(defs)
    if not jobs:
        pytest.skip("no job loads unpartitioned extract assets only")

    def took(name: str) -> float:  # the job's longest step time so far (the pool test ran some), pool waits aside
        runs = instance.get_runs(dg.RunsFilter(job_name=name, statuses=[dg.DagsterRunStatus.SUCCESS]))
        return max((end - start for start, end in (pool_step_window(instance, run.run_id) for run in runs)), default=0)

    job = max(jobs, key=took)  # the slowest load: the kill lands while its step runs
    run_id = client.submit_job_execution(job)

    def step_running():
        run = instance.get_run_by_id(run_id)
        return run.status == dg.DagsterRunStatus.STARTED and "STEP_START" in event_types(instance, run_id)

    wait_for(f"the {job} step to start", step_running, 240, topology, every_s=0.2)
    worker = run_process(instance, instance.get_run_by_id(run_id))
    assert worker is not None
    os.kill(worker.pid, signal.SIGKILL)

    failed = wait_for("run monitoring to mark the run failed", lambda: finished(instance, run_id), 120, topology)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    messages = [record.event_log_entry.message for record in instance.get_records_for_run(run_id, limit=10_000).records]
    # who noticed: the code server, the worker's parent, checks its run processes every moment (Dagster's
    # `_check_for_orphaned_runs`); run monitoring (LocalProcessRunLauncher's health check, every 10 s) is the backstop
    # for a worker whose code server is gone too (tests/test_deploy.py); the orphaned_runs sensor judges only runs
    # of a local sqlite instance or tagged by `elt run`, so it leaves these alone
    by_code_server = [m for m in messages if f"Run execution process for {run_id}" in m and "signal 9" in m]
    by_monitoring = [m for m in messages if "Detected run worker status" in m and f"pid {worker.pid}" in m]
    assert by_code_server or by_monitoring, messages[-5:]
    print(f"{job}: killed worker marked failed by {'the code server' if by_code_server else 'run monitoring'}")

    def the_retry():
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
        return runs[0] if runs else None

    retry = wait_for("the retry run", the_retry, 120, topology)
    retry = wait_for("the retry to finish", lambda: finished(instance, retry.run_id), 300, topology)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, retry.status
    # the killed load, the retry and the earlier loads together hold exactly the rows of one clean load
    one_clean_load = {key: rows for key, rows in relation_rows(demo_raw_warehouse, jobs[job]).items() if rows}
    assert one_clean_load, f"{job} loads no table of its own name"
    assert {
        key: rows for key, rows in prod_rows(topology, jobs[job]).items() if key in one_clean_load
    } == one_clean_load
    assert not instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots


def next_ticks(defs: dg.Definitions, after: datetime) -> list[tuple[datetime, dg.ScheduleDefinition]]:
    """Every schedule running by default in prod with its next cron tick after `after`, soonest first."""
    from dagster._utils.schedules import cron_string_iterator

    ticks = []
    for schedule in (defs.resolve_schedule_def(unresolved.name) for unresolved in defs.schedules or []):
        if schedule.default_status != dg.DefaultScheduleStatus.RUNNING:
            continue
        tick = next(cron_string_iterator(after.timestamp(), schedule.cron_schedule, schedule.execution_timezone))
        ticks.append((tick.astimezone(UTC), schedule))
    return sorted(ticks, key=lambda tick: (tick[0], tick[1].name))


@pytest.mark.slow
def test_a_schedule_tick_launches_its_job(topology):
    """The schedule (running by default in prod) whose cron fires first after the daemon started: its tick launches
    its job, which succeeds. Waits for that cron minute when it comes within SCHEDULE_WAIT_LIMIT_S of the daemon's
    start, and skips (saying which tick and when) otherwise."""
    instance = topology.instance
    ticks = next_ticks(topology.defs, topology.started_at)
    if not ticks:
        pytest.skip("no schedule runs by default in prod")
    tick_at, schedule = ticks[0]
    if (tick_at - datetime.now(UTC)).total_seconds() > SCHEDULE_WAIT_LIMIT_S:
        limit = SCHEDULE_WAIT_LIMIT_S // 60
        pytest.skip(f"the first schedule tick, {schedule.name} at {tick_at:%H:%M} UTC, is over {limit} minutes away")
    print(f"waiting for {schedule.name} at {tick_at:%H:%M} UTC")

    def the_run():
        runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/schedule_name": schedule.name}))
        return next((r.dagster_run for r in runs if r.create_timestamp.timestamp() >= tick_at.timestamp()), None)

    wait_s = max(0.0, (tick_at - datetime.now(UTC)).total_seconds()) + 120
    run = wait_for(f"the run of {schedule.name}", the_run, wait_s, topology, every_s=2)
    assert run.job_name == schedule.job_name
    run = wait_for("the scheduled run to finish", lambda: finished(instance, run.run_id), 600, topology)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
    assert created >= tick_at.timestamp(), (created, tick_at)  # launched by the tick


def test_sigterm_stops_the_three_processes_and_the_local_postgres(topology):
    serve = psutil.Process(topology.process.pid)
    children = serve.children(recursive=True)
    postgres = [
        p for p in psutil.process_iter(["cmdline"]) if str(topology.data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert len(children) >= 3 and postgres
    topology.process.send_signal(signal.SIGTERM)
    assert topology.process.wait(timeout=90) == 0, topology.output()
    _, alive = psutil.wait_procs(children + postgres, timeout=30)
    assert not alive, [p.pid for p in alive]
    assert "stopping: code server, webserver, daemon, local PostgreSQL" in topology.output()
