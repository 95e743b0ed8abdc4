"""Two fixes to Dagster's wait for a pool slot inside a run (dagster 1.13), applied when the definitions load, so
every process that runs our steps has them (`elt run`, the run workers of `dagster dev` and of a deployment):

- the wait spins: `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns
  `min([0, *intervals])`, which is never positive, so `ActiveExecution.sleep_til_ready` never sleeps and the run
  burns a core while a slot is taken. Fixed: the time to the next pending check, never negative.
- the wait ignores Ctrl-C and SIGTERM: a run captures interrupts and checks them only when a step starts, so a run
  waiting for a slot can only be stopped with SIGKILL. Fixed: the wait sleeps in short naps and raises the captured
  interrupt, which Dagster turns into a failed run whose pending claims are released.

`elt run` waits for the slot before it starts a run (orchestration/lib/runs.py `wait_for_pool`), so these cover
the rest: a run racing another process for the slot, and runs the daemon launches.
"""

from __future__ import annotations

import time

from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import check_captured_interrupt

NAP_S = 0.25


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


def apply() -> None:
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check
    ActiveExecution.sleep_til_ready = _sleep_til_ready
