"""Run one measurement in a fresh child process and report its time and the peak memory of its process tree.

A fresh `spawn`ed process per run keeps stages from polluting each other (imports, caches, the heap of an earlier
stage). Peak memory is sampled with psutil as the sum of RSS over the child and all its descendants, because Sling,
the DuckDB CLI and dbt run as subprocesses at the same time as the Python that drives them.
"""

from __future__ import annotations

import multiprocessing
import resource
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

POLL_SECONDS = 0.05
MIB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    """One timed run: the seconds the work took (setup excluded), the rows it moved, the peak MiB of its tree."""

    seconds: float
    rows: int
    peak_mib: float
    note: str = ""  # something the run reported that the reader should know (e.g. failing dbt tests)


class _PeakSampler:
    """Samples the RSS of this process plus its descendants until stopped; keeps the highest sum."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # a subprocess that ended between listing and reading
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.peak_bytes = max(self.peak_bytes, self._sample())

    def __enter__(self) -> _PeakSampler:
        self.peak_bytes = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _in_child(work: Callable[..., tuple], args: tuple[Any, ...]) -> Run:
    with _PeakSampler() as sampler:
        seconds, rows, *note = work(*args)
    # ru_maxrss (KiB on Linux) catches a peak of this process between two samples
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    peak_mib = max(sampler.peak_bytes, own_peak, children_peak) / MIB
    return Run(seconds=seconds, rows=rows, peak_mib=peak_mib, note=note[0] if note else "")


def run_in_child(work: Callable[..., tuple], *args: Any) -> Run:
    """Call `work(*args)` in a new process; `work` returns (seconds timed, rows[, note]) and must be importable."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_in_child, work, args).result()
