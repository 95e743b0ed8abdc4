"""The production topology as `elt serve` starts it: a code server, the webserver and the daemon over a PostgreSQL
instance (the local one `elt serve` starts from pgserver), ELT_ENV=prod on a temp prod warehouse.

One topology for the module; the tests run in order against it: the drop sensor (running in prod) picks up a CSV
and its run is queued, launched by the daemon and lands in prod; a schedule tick launches its job; two warehouse
writers take turns on the `duckdb_warehouse` pool; a run worker killed with SIGKILL is marked failed (by the code
server that started it; run monitoring's own check of the pid is tested in test_deploy.py) and run retries re-run it
with exact row counts; SIGTERM stops every process and the PostgreSQL.
Shortened through real settings only: DAGSTER_DEQUEUE_INTERVAL_SECONDS, ELT_HACKERNEWS_CRON.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import signal
import socket
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

from extract.shop.seed import seed_shop
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.environment import REPO_ROOT
from orchestration.lib.runs import run_process

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DROPPED = sorted((REPO_ROOT / "extract" / "files" / "demo_drops").glob("*.csv"))[0]
START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Topology:
    process: subprocess.Popen
    log: Path
    data_dir: Path
    drops: Path
    prod: Path
    webserver_port: int
    instance: dg.DagsterInstance
    tick_at: datetime  # when ELT_HACKERNEWS_CRON fires (once)

    def graphql(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.webserver_port)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(what: str, predicate, timeout_s: float, topology: Topology | None = None, every_s: float = 0.5):
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
    return not instance.get_runs(
        dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ]
        )
    )


def prod_rows(topology: Topology, sql: str):
    wait_for("no run in progress", lambda: idle(topology.instance), 240, topology)
    with duckdb.connect(str(topology.prod), read_only=True) as con:
        return con.sql(sql).fetchall()


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("topology")
    data_dir, drops, prod = root / "data", root / "drops", root / "prod" / "prod.duckdb"
    drops.mkdir()
    prod.parent.mkdir()
    # dropped before the start: the sensor's first tick, when the daemon starts, finds it (later ones every 60 s)
    shutil.copy(DROPPED, drops / DROPPED.name)
    # one tick of the hourly Hacker News schedule, moved (ELT_HACKERNEWS_CRON) to a few minutes after the start
    tick_at = (datetime.now(UTC) + timedelta(minutes=4)).replace(second=0, microsecond=0)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DAGSTER_PG_", "ELT_", "DAGSTER_CLOUD_")) and key != "DAGSTER_HOME"
    }
    env |= {
        "ELT_ENV": "prod",
        "ELT_DATA_DIR": str(data_dir),
        "ELT_PROD_DATABASE": str(prod),
        "ELT_FILES_DROP_DIR": str(drops),
        "ELT_HACKERNEWS_CRON": f"{tick_at.minute} {tick_at.hour} * * *",
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
    topology = Topology(process, log, data_dir, drops, prod, port, None, tick_at)  # type: ignore[arg-type]
    try:
        wait_for("the webserver", lambda: "webserver: http" in topology.output(), START_TIMEOUT_S, topology)
        wait_for("the webserver's /server_info", lambda: _answers(port), 120, topology)
        pg_port = re.search(r"local PostgreSQL 127\.0\.0\.1:(\d+)/", topology.output()).group(1)
        password = (data_dir / "serve" / "postgres" / "password").read_text().strip()
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": pg_port,
                "DAGSTER_PG_USER": "shop",
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
    instance, client = topology.instance, topology.graphql()
    first = client.submit_job_execution("hackernews_load")
    second = client.submit_job_execution("shop_daily")
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

    wait_for("both runs", both_done, 600, topology, every_s=0.2)  # 2 runs in turn: 300 s was not enough on a busy CI
    for run_id in (first, second):
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS, run_id
    windows = [pool_step_window(instance, run_id) for run_id in (first, second)]
    (start_a, end_a), (start_b, end_b) = sorted(windows)
    assert end_a <= start_b, f"the pool's steps overlapped: {windows}"
    assert saw_waiting, "no run was seen waiting for the duckdb_warehouse slot"


def test_a_dropped_csv_is_picked_up_by_the_daemon_queued_launched_and_lands_in_prod(topology):
    instance = topology.instance
    source = DROPPED
    expected_rows = sum(1 for line in source.read_text().splitlines()[1:] if line.strip())

    def the_run():
        runs = instance.get_runs(dg.RunsFilter(job_name="files_load", tags={"share_price_file": source.name}))
        return runs[0] if runs else None

    run = wait_for("the sensor's run", the_run, 150, topology)  # the sensor ticks every 60 s
    assert run.tags["dagster/sensor_name"] == "share_price_drops_sensor"
    run = wait_for("the files_load run to finish", lambda: finished(instance, run.run_id), 240, topology)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    types = event_types(instance, run.run_id)
    assert types.index("PIPELINE_ENQUEUED") < types.index("PIPELINE_STARTING") < types.index("PIPELINE_START")
    record = instance.get_run_record_by_id(run.run_id)
    print(f"sensor run: queued -> rows in prod {record.end_time - record.create_timestamp.timestamp():.1f} s")
    [(rows, files)] = prod_rows(
        topology, "select count(*), string_agg(distinct _source_file, ',') from raw_files.share_prices"
    )
    assert (rows, files) == (expected_rows, source.name)


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


def test_a_killed_run_worker_is_marked_failed_and_the_retry_recovers_with_exact_row_counts(topology):
    instance, client = topology.instance, topology.graphql()
    run_id = client.submit_job_execution("shop_daily")

    def step_running():
        run = instance.get_run_by_id(run_id)
        return run.status == dg.DagsterRunStatus.STARTED and "STEP_START" in event_types(instance, run_id)

    wait_for("the shop step to start", step_running, 240, topology, every_s=0.2)
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
    print(f"killed worker marked failed by {'the code server' if by_code_server else 'run monitoring'}")

    def the_retry():
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
        return runs[0] if runs else None

    retry = wait_for("the retry run", the_retry, 120, topology)
    retry = wait_for("the retry to finish", lambda: finished(instance, retry.run_id), 300, topology)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, retry.status
    seed = {name: p.default for name, p in inspect.signature(seed_shop).parameters.items()}
    counts = prod_rows(
        topology,
        "select (select count(*) from raw_shop.customers), (select count(*) from raw_shop.products), "
        "(select count(*) from raw_shop.orders), (select count(distinct order_id) from raw_shop.orders)",
    )
    assert counts == [(seed["customers"], seed["products"], seed["orders"], seed["orders"])]
    assert not instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots


def test_a_schedule_tick_launches_its_job(topology):
    instance = topology.instance

    def the_run():
        runs = instance.get_runs(
            dg.RunsFilter(job_name="hackernews_load", tags={"dagster/schedule_name": "hackernews_load_hourly_schedule"})
        )
        return runs[0] if runs else None

    wait_s = max(0.0, (topology.tick_at - datetime.now(UTC)).total_seconds()) + 90
    run = wait_for("the scheduled run", the_run, wait_s, topology)
    run = wait_for("the scheduled run to finish", lambda: finished(instance, run.run_id), 240, topology)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
    assert created >= topology.tick_at.timestamp(), (created, topology.tick_at)  # launched by the tick


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
