"""A guard for Sling runs that stop making progress.

Sling 1.4.11 was seen hanging for good on a loaded machine: Sling waiting on its DuckDB CLI, the CLI waiting on its
input pipe, both at 0 % CPU, with no timeout anywhere. `stall_guard()` watches every Sling process this process
started and their children (the DuckDB CLI); when that whole tree uses almost no CPU (less than 1 % of one core)
for `ELT_SLING_STALL_SECONDS` (default 180 s) while its processes stay the same, it kills the tree. The caller sees
Sling fail, and `guard.stalled` says why. Nothing half-written becomes visible: the DuckDB CLI's open transaction
dies with it, so every raw table keeps its previous content.

A busy Sling (reading PostgreSQL, writing DuckDB) uses far more than 1 % CPU; a Sling that waits on a slow server
query for minutes would be stopped too, which is why the limit is a setting.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psutil

STALL_SECONDS = 180.0
STALL_SETTING = "ELT_SLING_STALL_SECONDS"
IDLE_CPU_SHARE = 0.01  # below this share of one core over the window, the tree counts as making no progress
T = TypeVar("T")


def stall_seconds() -> float:
    """The window after which an idle Sling is stopped: `ELT_SLING_STALL_SECONDS`, else 180 s."""
    value = os.environ.get(STALL_SETTING, "").strip()
    if not value:
        return STALL_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{STALL_SETTING}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{STALL_SETTING}={value!r} must be more than 0 seconds")
    return seconds


def is_sling(process: psutil.Process) -> bool:
    try:
        return process.name().startswith("sling")
    except psutil.Error:
        return False


@dataclass
class StallGuard:
    idle_seconds: float
    stalled: str | None = None  # what was stopped and why, once the guard killed a stalled tree


def _tree(me: psutil.Process, match: Callable[[psutil.Process], bool]) -> dict[int, psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for root in (process for process in me.children(recursive=True) if match(process)):
        found[root.pid] = root
        try:
            found.update((child.pid, child) for child in root.children(recursive=True))
        except psutil.Error:
            pass
    return found


def _cpu_seconds(processes: dict[int, psutil.Process]) -> float:
    total = 0.0
    for process in processes.values():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@contextmanager
def stall_guard(
    idle_seconds: float | None = None,
    poll_seconds: float = 2.0,
    match: Callable[[psutil.Process], bool] = is_sling,
) -> Iterator[StallGuard]:
    """Watch, while the block runs, the processes started by this one that `match` (Sling) and their children;
    kill them when they make no progress for `idle_seconds` (see the module docstring)."""
    guard = StallGuard(idle_seconds=stall_seconds() if idle_seconds is None else idle_seconds)
    stop = threading.Event()
    me = psutil.Process()

    def watch() -> None:
        anchor: tuple[float, float, frozenset[int]] | None = None  # (since, cpu seconds then, pids)
        while not stop.wait(poll_seconds):
            processes = _tree(me, match)
            if not processes:
                anchor = None
                continue
            now, used, pids = time.monotonic(), _cpu_seconds(processes), frozenset(processes)
            if anchor is None or pids != anchor[2] or used - anchor[1] >= guard.idle_seconds * IDLE_CPU_SHARE:
                anchor = (now, used, pids)  # new processes, or real work since the anchor: progress
                continue
            if now - anchor[0] >= guard.idle_seconds:
                names = []
                for process in processes.values():
                    try:
                        names.append(f"{process.name()} (pid {process.pid})")
                        process.kill()
                    except psutil.Error:
                        pass
                guard.stalled = (
                    f"Sling made no progress for {guard.idle_seconds:.0f} s ({used - anchor[1]:.2f} s of CPU in "
                    f"that time) and was stopped: {', '.join(sorted(names))}. Nothing it was writing was committed; "
                    f"re-running continues from the last committed state ({STALL_SETTING} sets the limit)"
                )
                return

    thread = threading.Thread(target=watch, name="sling-stall-guard", daemon=True)
    thread.start()
    try:
        yield guard
    finally:
        stop.set()
        thread.join()


class SlingStalled(RuntimeError):
    """Sling stopped making progress twice in a row; the message is the second stall's."""


def retry_once_on_stall(attempt: Callable[[], T], on_stall: Callable[[str], None] = lambda _: None) -> T:
    """`attempt()` (one Sling run) under the stall guard. A stalled attempt committed nothing: `on_stall` hears why
    and it runs once more; a second stall raises SlingStalled. An attempt that fails without stalling raises."""
    stalls = 0
    while True:
        with stall_guard() as guard:
            try:
                result = attempt()
            except Exception:
                if not guard.stalled:
                    raise
        if not guard.stalled:
            return result
        stalls += 1
        if stalls == 2:
            raise SlingStalled(guard.stalled)
        on_stall(guard.stalled)
