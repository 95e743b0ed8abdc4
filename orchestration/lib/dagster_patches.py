"""Two fixes to Dagster's wait for a pool slot inside a run, applied when the definitions load, so every process that
runs our steps has them (`elt run`, the run workers of `dagster dev` and of a deployment):

- the wait spins: `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns
  `min([0, *intervals])`, which is never positive, so `ActiveExecution.sleep_til_ready` never sleeps and the run
  burns a core while a slot is taken. Fixed: the time to the next pending check, never negative.
- the wait ignores Ctrl-C and SIGTERM: a run captures interrupts and checks them only when a step starts, so a run
  waiting for a slot can only be stopped with SIGKILL. Fixed: the wait sleeps in short naps and raises the captured
  interrupt, which Dagster turns into a failed run whose pending claims are released.

Each fix replaces a private Dagster function, so `apply()` first checks that the installed Dagster still has the
bug and replaces nothing where it does not: the interval is asked for a pending claim whose check is a minute away
(the bug answers <= 0), and the wait's source is read for a check of captured interrupts (where the source is not
readable, the bug is assumed in the 1.13 releases it was seen in, and nowhere else). A fix left out is said once,
as a warning naming it; `apply()` returns the names of the fixes in place.

`elt run` waits for the slot before it starts a run (orchestration/lib/runs.py `wait_for_pool`), so these cover
the rest: a run racing another process for the slot, and runs the daemon launches.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import check_captured_interrupt

NAP_S = 0.25
VERIFIED_VERSIONS = "1.13."  # the releases both bugs were seen in


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    if not self._pending_claims or not self._pending_timeouts:
        return 0.0
    now = time.time()
    return max(0.0, min(ready_at - now for ready_at in self._pending_timeouts.values()))


def _sleep_til_ready(self: ActiveExecution) -> None:
    deadline = time.monotonic() + self.sleep_interval()
    while True:
        if check_captured_interrupt():
            raise DagsterExecutionInterruptedError("interrupted while waiting for a pool slot")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(NAP_S, left))


def interval_spins(interval_to_next_pending_claim_check: Callable[[InstanceConcurrencyContext], float]) -> bool:
    """True when the function answers <= 0 for a pending claim whose next check is a minute away: a wait on it
    would never sleep. Called on a bare context holding only that claim (no instance, nothing written)."""
    context = InstanceConcurrencyContext.__new__(InstanceConcurrencyContext)
    context._pending_claims = {"step"}
    context._pending_timeouts = {"step": time.time() + 60}
    context._pending_claim_counts = {"step": 1}
    return interval_to_next_pending_claim_check(context) <= 0


def wait_ignores_interrupts(sleep_til_ready: Callable[[ActiveExecution], None]) -> bool:
    """True when the wait never looks at captured interrupts: its source names none. Without a readable source,
    true in the releases the bug was verified in."""
    try:
        source = inspect.getsource(sleep_til_ready)
    except (OSError, TypeError):
        return dg.__version__.startswith(VERIFIED_VERSIONS)
    return "interrupt" not in source


@dataclass(frozen=True)
class Fix:
    name: str
    owner: type
    attribute: str
    replacement: Callable
    has_bug: Callable[[Callable], bool]  # given Dagster's own function: does it still have the bug?
    bug: str  # what Dagster's own function does wrong, for the warning when the fix is left out


FIXES = (
    Fix(
        "pool_wait_sleeps",
        InstanceConcurrencyContext,
        "interval_to_next_pending_claim_check",
        _interval_to_next_pending_claim_check,
        interval_spins,
        "a run waiting for a pool slot never sleeps",
    ),
    Fix(
        "pool_wait_hears_interrupts",
        ActiveExecution,
        "sleep_til_ready",
        _sleep_til_ready,
        wait_ignores_interrupts,
        "a run waiting for a pool slot ignores Ctrl-C and SIGTERM",
    ),
)
DAGSTER_ORIGINALS = {fix.name: getattr(fix.owner, fix.attribute) for fix in FIXES}  # as imported, before apply()
_said: set[str] = set()  # fixes already reported as left out in this process


def _check(fix: Fix, original: Callable) -> bool | None:
    """Does Dagster's function still have the bug? None: the check itself failed (Dagster's internals changed)."""
    try:
        return fix.has_bug(original)
    except Exception:
        return None


def apply(fixes: tuple[Fix, ...] = FIXES) -> list[str]:
    """Put each fix in place where Dagster's own function still has the bug; returns the names of the fixes in
    place (calling it again changes nothing)."""
    applied = []
    for fix in fixes:
        current = getattr(fix.owner, fix.attribute)
        if current is fix.replacement:
            applied.append(fix.name)
            continue
        has_bug = _check(fix, current)
        if has_bug:
            setattr(fix.owner, fix.attribute, fix.replacement)
            applied.append(fix.name)
        elif fix.name not in _said:
            _said.add(fix.name)
            why = "the check of the bug failed" if has_bug is None else "the installed one does not have the bug"
            warnings.warn(
                f"orchestration/lib/dagster_patches.py: {fix.name} not applied to "
                f"{fix.owner.__name__}.{fix.attribute} in dagster {dg.__version__} ({why}; the bug: {fix.bug})",
                stacklevel=2,
            )
    return applied
