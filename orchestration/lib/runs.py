"""Runs whose process is gone, and waiting for a pool slot without spinning.

A Dagster run holds its `duckdb_warehouse` pool slot in the instance database until its process frees it. A process
killed with SIGKILL (or by the OOM killer, a closed laptop lid, a power cut) never does: the slot stays claimed and
every later run waits for it forever. Dagster's daemon detects dead run workers under run monitoring, but runs that
execute in the caller's process (`elt run`, the tests, the benchmark) have no monitor. This module is that monitor:

- `owner_tags()` are tags a run executed in this process carries: host, pid and the process's start time;
- `reap_orphaned_runs()` finds runs still marked in progress whose process is gone (the pid is dead, or now belongs to
  a process started after the run), marks each failed with a message naming the pid, and frees its slots; it also
  frees slots still held by runs that ended. Runs on other hosts are left to the daemon's run monitoring; on a
  local (sqlite) instance, runs without our tags (`dg launch`, `dagster dev`'s run workers) are judged by the pid
  Dagster itself records in their engine events;
- `end_leftover_processes()` (run by `reap_orphaned_runs`) ends the dbt and Sling processes whose owner is gone: a run
  killed with SIGKILL cannot stop its children, and a dbt or Sling left running holds the warehouse file's lock, so
  the next run's loads fail with DuckDB's "Could not set lock on file". Each tool is started with its owner in its
  environment (`ELT_OWNER_PROCESS`, extract.tooling.owner_environ), which is how it is recognised here;
- `one_runner()` lets one whole-pipeline pass at a time run on an instance (an OS file lock, freed on any death);
- `wait_for_pool()` waits, before a run starts, until the pool has a free slot: it says which run holds it (job,
  step, pid, since when), sleeps between checks, reaps runs that died meanwhile, and Ctrl-C / SIGTERM end it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from filelock import FileLock, Timeout

from extract.tooling import OWNER_VARIABLE

HOST_TAG, PID_TAG, PROCESS_STARTED_TAG = "elt/host", "elt/pid", "elt/process_started"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_CLOCK_SLACK_S = 2.0  # a run's first event is written after its process started: allow for rounding


def owner_tags() -> dict[str, str]:
    """Tags that name this process as the one executing a run."""
    me = psutil.Process()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(me.pid), PROCESS_STARTED_TAG: f"{me.create_time():.3f}"}


@dataclass(frozen=True)
class RunProcess:
    pid: int
    host: str | None  # None: not recorded (a local instance's run worker)
    started_before: float  # the process must have started by then (epoch seconds)


def run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProcess | None:
    """The process executing `run`, from our tags or else from the pid Dagster's engine events record."""
    if PID_TAG in run.tags:
        started = float(run.tags.get(PROCESS_STARTED_TAG, "0") or 0)
        return RunProcess(int(run.tags[PID_TAG]), run.tags.get(HOST_TAG), started + _CLOCK_SLACK_S)
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=False, limit=50
    ).records
    for record in records:
        data = record.event_log_entry.dagster_event.engine_event_data if record.event_log_entry.dagster_event else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None:
            return RunProcess(int(pid.value), None, record.event_log_entry.timestamp + _CLOCK_SLACK_S)
    return None


def process_gone(process: RunProcess) -> bool:
    """True when no process with that pid exists, or the pid now names a process started after the run."""
    try:
        return psutil.Process(process.pid).create_time() > process.started_before
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _is_local(instance: dg.DagsterInstance) -> bool:
    return isinstance(instance.run_storage, SqliteRunStorage)


def orphan_reason(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why `run` is known dead, or None when it may be alive (or lives on a host we cannot see)."""
    process = run_process(instance, run)
    if process is None:
        return None
    if process.host is not None and process.host != socket.gethostname():
        return None
    if process.host is None and not _is_local(instance):
        return None
    if not process_gone(process):
        return None
    return f"its process (pid {process.pid}) is gone: killed, out of memory or the machine stopped"


def _owner_gone(owner: str) -> bool:
    """`owner` is `<pid>:<start time>` (extract.tooling.owner_environ); a value we cannot read counts as alive."""
    pid, _, started = owner.partition(":")
    try:
        return process_gone(RunProcess(int(pid), None, float(started) + _CLOCK_SLACK_S))
    except ValueError:
        return False


def leftover_processes() -> list[tuple[psutil.Process, str]]:
    """This machine's processes started by an owner that is gone (OWNER_VARIABLE in their environment), with it."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            owner = process.environ().get(OWNER_VARIABLE)
        except (psutil.Error, OSError):  # gone meanwhile, a zombie, or another user's
            continue
        if owner and _owner_gone(owner):
            found.append((process, owner))
    return found


def _ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # dead, waiting for its new parent to reap it
    except psutil.NoSuchProcess:
        return True


def _wait_ended(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """The processes still alive after up to `timeout_s` (they are not our children: no wait(), poll them)."""
    deadline = time.monotonic() + timeout_s
    alive = [process for process in processes if not _ended(process)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [process for process in alive if not _ended(process)]
    return alive


def end_leftover_processes(say: Callable[[str], None] = print, grace_s: float = 5.0) -> list[int]:
    """End (SIGTERM, then SIGKILL after `grace_s`) every dbt or Sling left running by a process that is gone, and
    wait until they are gone (their locks freed); returns their pids."""
    ended = []
    for process, owner in leftover_processes():
        try:
            command = " ".join(process.cmdline()[:3]) or process.name()
            process.terminate()
        except psutil.Error:
            continue
        say(f"ending pid {process.pid} ({command}): left running by pid {owner.partition(':')[0]}, which is gone")
        ended.append(process)
    for process in _wait_ended(ended, grace_s):
        with suppress(psutil.Error):
            process.kill()
    _wait_ended(ended, grace_s)
    return [process.pid for process in ended]


def reap_orphaned_runs(instance: dg.DagsterInstance, say: Callable[[str], None] = print) -> list[str]:
    """End the tools left running by dead processes, mark failed every in-progress run whose process is gone and
    free its pool slots; free the slots of runs that already ended. Returns the ids of the runs marked failed."""
    end_leftover_processes(say)
    reaped = []
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
        reason = orphan_reason(instance, run)
        if reason is None:
            continue
        message = f"Run {run.run_id} ({run.job_name}) marked failed by elt: {reason}; its pool slots were freed."
        instance.report_run_failed(run, message=message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        say(message)
        reaped.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
    return reaped


def describe_holders(instance: dg.DagsterInstance, pool: str) -> str:
    """`run 1a2b3c4d (job files_load, step files_share_prices, pid 123, since 10:04:05 UTC)` for each holder."""
    holders = []
    for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots:
        run = instance.get_run_record_by_id(slot.run_id)
        if run is None:
            holders.append(f"run {slot.run_id[:8]} (deleted), step {slot.step_key}")
            continue
        process = run_process(instance, run.dagster_run)
        pid = f", pid {process.pid}" + (f" on {process.host}" if process.host else "") if process else ""
        since = run.start_time or run.create_timestamp.timestamp()
        clock = datetime.fromtimestamp(since, UTC).strftime("%H:%M:%S UTC")
        holders.append(
            f"run {slot.run_id[:8]} (job {run.dagster_run.job_name}, step {slot.step_key}{pid}, since {clock})"
        )
    return "; ".join(holders) or "nobody (slots are being freed)"


def pool_is_free(instance: dg.DagsterInstance, pool: str) -> bool:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return True
    info = storage.get_concurrency_info(pool)
    if info.limit is None:
        return True
    return len(info.claimed_slots) < info.limit


def wait_for_pool(
    instance: dg.DagsterInstance,
    pool: str,
    say: Callable[[str], None] = print,
    poll_s: float = 1.0,
    remind_s: float = 60.0,
) -> float:
    """Block until `pool` has a free slot; returns the seconds waited. Says who holds it at once and every
    `remind_s`; between checks it sleeps (KeyboardInterrupt, i.e. Ctrl-C or SIGTERM under `elt`, ends the wait)."""
    started = time.monotonic()
    told = None
    while True:
        reap_orphaned_runs(instance, say)
        if pool_is_free(instance, pool):
            return time.monotonic() - started
        now = time.monotonic()
        if told is None or now - told >= remind_s:
            waited = f" (waiting {now - started:.0f} s)" if told is not None else ""
            say(f"waiting for pool {pool}{waited}: held by {describe_holders(instance, pool)}")
            told = now
        time.sleep(poll_s)


@contextmanager
def one_runner(folder: Path, say: Callable[[str], None] = print, poll_s: float = 1.0) -> Iterator[None]:
    """Hold the runner lock of an instance folder: one whole-pipeline pass at a time, so two `elt run` never plan
    the same pending partitions. The OS releases the lock when the holder dies, however it dies; a second runner
    says which process holds it and waits (Ctrl-C ends the wait)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / "elt-run.lock")
    owner = folder / "elt-run.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.exists() else "another process"
        say(f"waiting for the other pipeline run on this instance to finish: {holder}")
        lock.acquire(timeout=-1, poll_interval=poll_s)
    try:
        me = psutil.Process()
        started = datetime.fromtimestamp(me.create_time(), UTC).strftime("%H:%M:%S UTC")
        owner.write_text(f"pid {me.pid} on {socket.gethostname()} ({' '.join(me.cmdline()[:3])}), since {started}\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
