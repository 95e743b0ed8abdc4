"""Killed and interrupted runs: a run whose process is gone must not wedge the platform.

Everything here runs the real `elt` command in a subprocess on its own data dir (the bundled demos, a real
PostgreSQL from pgserver, real dbt): SIGKILL at a moment of the run, then the next `elt run` recovers to the content
of the session's clean demo run; a run that must wait for the warehouse pool says who holds it, sleeps, and stops on
Ctrl-C and SIGTERM. Moments are chosen by what the instance records (a step started) or by the processes running
(a dbt under `elt run`), never by a source's log line, so the tests hold whichever sources are present.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest

from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.runs import PID_TAG, end_leftover_processes, reap_orphaned_runs

ELT = str(Path(sys.executable).parent / "elt")
RUN_TIMEOUT_S = 600  # a whole `elt run` on the demos takes 1-2.5 min here
VOLATILE = re.compile(r"^(_?loaded_at|_dlt_.*|_sling_.*)$")  # when and in which load a row arrived


def elt_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("ELT_", "DAGSTER_"))}
    return {**env, "ELT_DATA_DIR": str(data_dir), **extra}


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches the child as it would from a terminal, even when the suite itself runs as a background job
    (a shell starts background jobs with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_elt_run(data_dir: Path, log: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [ELT, "run"],
        env=elt_env(data_dir, **extra),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )


def elt_run(data_dir: Path, log: Path, **extra: str) -> subprocess.CompletedProcess:
    process = start_elt_run(data_dir, log, **extra)
    try:
        process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, log.read_text(), "")


def wait_for_text(log: Path, pattern: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text() if log.exists() else ""):
            return
        assert process.poll() is None, f"elt ended (rc {process.returncode}) before {pattern!r}:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def fingerprint(warehouse: Path) -> dict[str, tuple[int, int]]:
    """Rows and an order-free content hash of every raw table, intermediate model and mart (dlt's bookkeeping and
    load times left out; staging is views over raw, some with dlt's random row ids)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in con.sql(
            """
            select table_schema, table_name, column_name from information_schema.columns
            where table_catalog = current_database() and table_schema not like '%\\_staging' escape '\\'
              and table_schema not in ('elt_meta', 'staging') and table_name not like '\\_dlt\\_%' escape '\\'
            order by table_schema, table_name, ordinal_position
            """
        ).fetchall():
            if not VOLATILE.match(column):
                columns.setdefault((schema, table), []).append(f'"{column}"')
        return {
            f"{schema}.{table}": con.sql(
                f'select count(*), coalesce(sum(hash({", ".join(cols)})::hugeint), 0) from "{schema}"."{table}"'
            ).fetchone()
            for (schema, table), cols in columns.items()
        }


def warehouse_of(data_dir: Path) -> Path:
    return data_dir / "warehouse" / "dev.duckdb"


def open_instance(data_dir: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(data_dir / "dagster"))


@pytest.fixture(scope="module")
def clean_run(demo_run) -> tuple[dict[str, tuple[int, int]], float]:
    """The session's uninterrupted `elt run` on the demos: the content every recovery must reach, and how long it
    took."""
    return fingerprint(demo_run.warehouse), demo_run.seconds


def first_step_started(data_dir: Path) -> bool:
    """Whether a run on the data dir's instance has started a step (read through Dagster's own instance API; the
    instance may not exist yet, or be mid-creation by the `elt` process, in which case: not yet)."""
    if not (data_dir / "dagster" / "dagster.yaml").exists():
        return False
    try:
        with open_instance(data_dir) as instance:
            for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                if instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
                    return True
    except Exception:  # noqa: BLE001 (the storage is being created by the other process: look again)
        return False
    return False


def wait_until(what: str, predicate, process: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        assert process.poll() is None, f"elt ended (rc {process.returncode}) before {what}:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def dbt_under(process: subprocess.Popen) -> list[psutil.Process]:
    """The `dbt` processes running under `process`."""
    with contextlib.suppress(psutil.Error):
        return [
            child
            for child in psutil.Process(process.pid).children(recursive=True)
            if any(part.endswith("/dbt") for part in child.cmdline())
        ]
    return []


def test_a_run_killed_mid_load_frees_its_slot_and_the_next_run_recovers_exactly(
    tmp_path: Path, clean_run: tuple[dict[str, tuple[int, int]], float]
) -> None:
    """SIGKILL once the first run has started a step (a load, on a fresh data dir); the next `elt run` marks the
    dead run failed, frees the pool slot, finishes, and the warehouse equals a clean run's."""
    expected, _ = clean_run
    data_dir = tmp_path / "data"
    first = start_elt_run(data_dir, tmp_path / "killed.log")
    try:
        wait_until("a started step", lambda: first_step_started(data_dir), first, tmp_path / "killed.log")
    finally:
        first.kill()
        first.wait()
    with open_instance(data_dir) as instance:
        (killed,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert killed.tags[PID_TAG] == str(first.pid)

    result = elt_run(data_dir, tmp_path / "recovery.log")

    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Run {killed.run_id}" in result.stdout and f"(pid {first.pid}) is gone" in result.stdout
    with open_instance(data_dir) as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots
    assert fingerprint(warehouse_of(data_dir)) == expected


@pytest.fixture
def held_pool(tmp_path: Path) -> Iterator[tuple[Path, dg.DagsterRun, subprocess.Popen]]:
    """The warehouse pool's one slot held by a run whose process (a `sleep`) is alive: as a run of `dagster dev`
    or of another machine's `elt run` would hold it."""
    data_dir = tmp_path / "data"
    (data_dir / "dagster").mkdir(parents=True)
    (data_dir / "dagster" / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    holder = subprocess.Popen(["sleep", "600"])
    run = dg.DagsterRun(
        job_name="files_load",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={PID_TAG: str(holder.pid), "elt/process_started": f"{psutil.Process(holder.pid).create_time():.3f}"},
    )
    with open_instance(data_dir) as instance:
        instance.add_run(run)
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)
        assert storage.claim_concurrency_slot(WAREHOUSE_POOL, run.run_id, "files_share_prices").is_claimed
    yield data_dir, run, holder
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_waiting_run_names_the_holder_sleeps_and_stops_on_a_signal(
    tmp_path: Path, held_pool: tuple[Path, dg.DagsterRun, subprocess.Popen], stop: signal.Signals
) -> None:
    data_dir, holding, holder = held_pool
    log = tmp_path / "waiting.log"
    waiting = start_elt_run(data_dir, log)
    try:
        wait_for_text(log, r"waiting for pool duckdb_warehouse", waiting)
        assert f"run {holding.run_id[:8]} (job files_load, step files_share_prices, pid {holder.pid}" in log.read_text()
        cpu = psutil.Process(waiting.pid)
        before = sum(cpu.cpu_times()[:2])
        time.sleep(3)
        assert sum(cpu.cpu_times()[:2]) - before < 0.5, "the waiting run burns CPU"
        waiting.send_signal(stop)
        waiting.wait(timeout=20)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 130, log.read_text()[-2000:]
    assert "stopped" in log.read_text()


def test_a_slot_held_by_a_dead_process_is_freed(held_pool: tuple[Path, dg.DagsterRun, subprocess.Popen]) -> None:
    data_dir, holding, holder = held_pool
    with open_instance(data_dir) as instance:
        assert reap_orphaned_runs(instance, say=lambda _: None) == []  # alive: left alone
        holder.kill()
        holder.wait()
        said: list[str] = []
        assert reap_orphaned_runs(instance, say=said.append) == [holding.run_id]
        assert f"(pid {holder.pid}) is gone" in said[0]
        assert instance.get_run_by_id(holding.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots


OWNER_AND_TOOL = """
import subprocess, sys
from extract.tooling import owner_environ, scoped_environ

with scoped_environ(owner_environ()):  # as the dbt and Sling resources start their tools
    tool = subprocess.Popen([sys.executable, "-c", {tool!r}])
print(tool.pid, flush=True)
tool.wait()
"""
HOLDS_THE_WAREHOUSE = """
import duckdb, time
con = duckdb.connect({warehouse!r})
con.sql("create table if not exists t as select 1 as x")
print("locked", flush=True)
time.sleep(600)
"""


def test_a_tool_left_running_by_a_killed_process_is_ended_and_frees_the_warehouse(tmp_path: Path) -> None:
    """A process killed with SIGKILL cannot stop the tool it started: the tool (here a Python holding the DuckDB
    file, as dbt does) lives on and keeps the lock. `end_leftover_processes` ends it; a live owner's tool is left."""
    warehouse = tmp_path / "dev.duckdb"
    tool = HOLDS_THE_WAREHOUSE.format(warehouse=str(warehouse))
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_AND_TOOL.format(tool=tool)], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        tool_pid = int(owner.stdout.readline())
        assert owner.stdout.readline().strip() == "locked"  # the tool prints to the owner's stdout, inherited
        assert end_leftover_processes(say=lambda _: None) == [], "a live owner's tool was ended"
        owner.kill()
        owner.wait()
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(warehouse)).close()
        said: list[str] = []
        assert end_leftover_processes(say=said.append) == [tool_pid]
        assert f"ending pid {tool_pid}" in said[0] and f"left running by pid {owner.pid}, which is gone" in said[0]
        assert not psutil.pid_exists(tool_pid) or psutil.Process(tool_pid).status() == psutil.STATUS_ZOMBIE
        with duckdb.connect(str(warehouse)) as con:
            assert con.sql("select x from t").fetchall() == [(1,)]
    finally:
        owner.kill()
        with contextlib.suppress(psutil.Error, ValueError, NameError):
            psutil.Process(tool_pid).kill()


@pytest.mark.slow
def test_sigkill_during_dbt_build_the_next_run_ends_the_dbt_left_running(
    tmp_path: Path, clean_run: tuple[dict[str, tuple[int, int]], float]
) -> None:
    """`elt run` killed while dbt builds leaves dbt running (SIGKILL cannot be passed on), holding the warehouse's
    lock; the next `elt run` ends it, says so, and reaches the clean content. The orphan is stopped (SIGSTOP) before
    its parent is killed, so it cannot finish on its own first: only the recovery run can end it."""
    expected, _ = clean_run
    data_dir = tmp_path / "data"
    log = tmp_path / "killed.log"
    killed = start_elt_run(data_dir, log)
    try:
        wait_until("a dbt under elt run", lambda: dbt_under(killed), killed, log, timeout_s=RUN_TIMEOUT_S)
        dbt = dbt_under(killed)
        for process in dbt:
            process.suspend()
    finally:
        killed.kill()
        killed.wait()
    assert all(process.is_running() for process in dbt), "dbt ended with its parent: this test shows nothing"

    result = elt_run(data_dir, tmp_path / "recovery.log")

    assert result.returncode == 0, result.stdout[-3000:]
    assert f"ending pid {dbt[0].pid}" in result.stdout
    assert not any(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in dbt)
    assert fingerprint(warehouse_of(data_dir)) == expected


KILLS = int(os.environ.get("ELT_CRASH_LOOP_KILLS", "4"))


@pytest.mark.slow
def test_sigkill_at_random_moments_then_a_clean_run_always_reaches_the_clean_content(
    tmp_path: Path, clean_run: tuple[dict[str, tuple[int, int]], float]
) -> None:
    """SIGKILL at seeded random moments of `elt run`, each followed by an `elt run` that must finish (bounded) with
    the warehouse equal to a clean run's. A kill lands a random time after the run's first started step (so in a
    load, in dbt, or between runs, not in Python's start-up); the data dir goes back to empty every other round, so
    kills land in first loads as well as in re-runs."""
    expected, clean_seconds = clean_run
    rng = random.Random(15)
    data_dir = tmp_path / "data"
    for round_number in range(KILLS):
        if round_number % 2 == 0 and data_dir.exists():
            subprocess.run(["rm", "-rf", str(data_dir)], check=True)
        log = tmp_path / f"killed-{round_number}.log"
        moment = rng.uniform(0, 0.7 * clean_seconds)
        killed = start_elt_run(data_dir, log)
        try:
            wait_until("a started step", lambda: first_step_started(data_dir), killed, log, timeout_s=RUN_TIMEOUT_S)
            killed.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if killed.poll() is None:
                killed.kill()
            killed.wait()
        result = elt_run(data_dir, tmp_path / f"recovery-{round_number}.log")
        where = f"round {round_number}, SIGKILL {moment:.1f} s after the first started step"
        assert result.returncode == 0, f"{where}:\n{result.stdout[-3000:]}"
        assert fingerprint(warehouse_of(data_dir)) == expected, where


WAITING_JOB = """
import dagster as dg
from orchestration.lib import dagster_patches

dagster_patches.apply()

@dg.op(pool="duckdb_warehouse")
def write_warehouse():
    return 1

@dg.job
def waits_for_the_pool():
    write_warehouse()

with dg.DagsterInstance.from_config({home!r}) as instance:
    result = waits_for_the_pool.execute_in_process(instance=instance, raise_on_error=False, run_id={run_id!r})
    print("run status:", result.dagster_run.status)
"""


def test_a_run_waiting_inside_dagster_sleeps_and_hears_ctrl_c(
    tmp_path: Path, held_pool: tuple[Path, dg.DagsterRun, subprocess.Popen]
) -> None:
    """Dagster's own wait for a slot (a run racing another process, or one the daemon launched), with the patches:
    it sleeps instead of spinning, and Ctrl-C fails the run and releases its pending claim."""
    data_dir, _, _ = held_pool
    run_id = str(uuid.uuid4())
    script = tmp_path / "waits.py"
    script.write_text(WAITING_JOB.format(home=str(data_dir / "dagster"), run_id=run_id))
    log = tmp_path / "waits.log"
    waiting = subprocess.Popen(
        [sys.executable, str(script)], stdout=log.open("w"), stderr=subprocess.STDOUT, preexec_fn=_as_in_a_terminal
    )
    try:
        wait_for_text(log, r"blocked by limit for pool duckdb_warehouse", waiting, timeout_s=120)
        cpu = psutil.Process(waiting.pid)
        before = sum(cpu.cpu_times()[:2])
        time.sleep(3)
        assert sum(cpu.cpu_times()[:2]) - before < 0.5, "Dagster's wait for the slot burns CPU"
        waiting.send_signal(signal.SIGINT)
        waiting.wait(timeout=20)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert "run status: DagsterRunStatus.FAILURE" in log.read_text(), log.read_text()[-2000:]
    with open_instance(data_dir) as instance:
        pending = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).pending_steps
        assert run_id not in {step.run_id for step in pending}


def test_sigterm_during_dbt_build_stops_dbt_fails_the_run_and_frees_the_slot(tmp_path: Path) -> None:
    """A supervisor's SIGTERM while `dbt build` runs: `elt run` stops dbt, marks the run failed, frees the pool
    slot and exits 130; no dbt process is left behind."""
    data_dir = tmp_path / "data"
    log = tmp_path / "elt.log"
    running = start_elt_run(data_dir, log)
    try:
        wait_until("a dbt under elt run", lambda: dbt_under(running), running, log, timeout_s=400)
        children = psutil.Process(running.pid).children(recursive=True)
        running.send_signal(signal.SIGTERM)
        running.wait(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 130, log.read_text()[-2000:]
    assert "stopped: interrupted during elt_all" in log.read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {[child.cmdline() for child in alive]}"
    with open_instance(data_dir) as instance:
        assert not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert not instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots
