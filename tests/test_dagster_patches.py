"""The fixes to Dagster's wait for a pool slot (orchestration/lib/dagster_patches.py): the installed Dagster still
has both bugs, the fixes remove them, and a Dagster whose own function is already fixed is left alone."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import capture_interrupts, check_captured_interrupt

from orchestration.lib import dagster_patches
from orchestration.lib.dagster_patches import DAGSTER_ORIGINALS

POOL = "duckdb_warehouse"


@pytest.fixture
def blocked_context(tmp_path: Path):
    """A real run's concurrency context on a real (sqlite) instance whose one slot of POOL another run holds:
    claiming it leaves a pending claim with its next check in the future."""
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides={"telemetry": {"enabled": False}}) as instance:
        instance.event_log_storage.set_concurrency_slots(POOL, 1)
        assert instance.event_log_storage.claim_concurrency_slot(POOL, "other-run", "other_step").is_claimed
        run = instance.create_run_for_job(dg.GraphDefinition("nothing").to_job())
        with InstanceConcurrencyContext(instance, run) as context:
            assert not context.claim(POOL, "my_step")  # the slot is taken: pending
            assert context.has_pending_claims()
            yield context


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dagster_patches, "_said", set())


class NeverReady:
    """What `sleep_til_ready` needs of an ActiveExecution: how long to wait."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def sleep_interval(self) -> float:
        return self.seconds


@pytest.fixture
def captured_interrupt():
    """A real SIGINT, captured as a run worker captures it while it executes."""
    with capture_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not check_captured_interrupt() and time.monotonic() < deadline:
            time.sleep(0.001)  # the handler runs in this thread at the next bytecode boundary
        assert check_captured_interrupt()
        yield


def test_dagsters_own_interval_spins_on_a_pending_claim_and_the_fix_waits(blocked_context) -> None:
    original = DAGSTER_ORIGINALS["pool_wait_sleeps"]
    assert original is not dagster_patches._interval_to_next_pending_claim_check
    assert original(blocked_context) <= 0  # the run would poll the database in a busy loop
    interval = dagster_patches._interval_to_next_pending_claim_check(blocked_context)
    assert 0 < interval <= max(blocked_context._pending_timeouts.values()) - time.time() + 1
    assert dagster_patches.interval_spins(original)
    assert not dagster_patches.interval_spins(dagster_patches._interval_to_next_pending_claim_check)


def test_dagsters_own_wait_ignores_a_captured_interrupt_and_the_fix_raises_it(captured_interrupt) -> None:
    DAGSTER_ORIGINALS["pool_wait_hears_interrupts"](NeverReady(0.01))  # returns: the run keeps waiting
    start = time.monotonic()
    with pytest.raises(DagsterExecutionInterruptedError):
        dagster_patches._sleep_til_ready(NeverReady(60))
    assert time.monotonic() - start < 5
    assert dagster_patches.wait_ignores_interrupts(DAGSTER_ORIGINALS["pool_wait_hears_interrupts"])
    assert not dagster_patches.wait_ignores_interrupts(dagster_patches._sleep_til_ready)


def test_apply_puts_both_fixes_in_place_on_the_installed_dagster(monkeypatch: pytest.MonkeyPatch) -> None:
    for fix in dagster_patches.FIXES:
        monkeypatch.setattr(fix.owner, fix.attribute, DAGSTER_ORIGINALS[fix.name])
    assert dagster_patches.apply() == ["pool_wait_sleeps", "pool_wait_hears_interrupts"]
    assert InstanceConcurrencyContext.interval_to_next_pending_claim_check is (
        dagster_patches._interval_to_next_pending_claim_check
    )
    assert ActiveExecution.sleep_til_ready is dagster_patches._sleep_til_ready
    assert dagster_patches.apply() == ["pool_wait_sleeps", "pool_wait_hears_interrupts"]  # again: no change


def test_a_dagster_that_fixed_its_interval_keeps_its_own_and_says_so(
    monkeypatch: pytest.MonkeyPatch, fresh_warnings, blocked_context
) -> None:
    def fixed_interval(self: InstanceConcurrencyContext) -> float:
        return max(0.0, min(ready_at - time.time() for ready_at in self._pending_timeouts.values()))

    monkeypatch.setattr(InstanceConcurrencyContext, "interval_to_next_pending_claim_check", fixed_interval)
    monkeypatch.setattr(ActiveExecution, "sleep_til_ready", DAGSTER_ORIGINALS["pool_wait_hears_interrupts"])
    with pytest.warns(UserWarning, match="pool_wait_sleeps not applied .*does not have the bug"):
        assert dagster_patches.apply() == ["pool_wait_hears_interrupts"]
    assert InstanceConcurrencyContext.interval_to_next_pending_claim_check is fixed_interval
    assert blocked_context.interval_to_next_pending_claim_check() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dagster_patches.apply()  # said once per process: no second warning


def test_a_dagster_whose_wait_checks_interrupts_keeps_its_own_and_says_so(
    monkeypatch: pytest.MonkeyPatch, fresh_warnings
) -> None:
    def fixed_wait(self: ActiveExecution) -> None:
        if check_captured_interrupt():
            raise DagsterExecutionInterruptedError("interrupted")
        time.sleep(self.sleep_interval())

    monkeypatch.setattr(ActiveExecution, "sleep_til_ready", fixed_wait)
    monkeypatch.setattr(
        InstanceConcurrencyContext, "interval_to_next_pending_claim_check", DAGSTER_ORIGINALS["pool_wait_sleeps"]
    )
    with pytest.warns(UserWarning, match="pool_wait_hears_interrupts not applied"):
        assert dagster_patches.apply() == ["pool_wait_sleeps"]
    assert ActiveExecution.sleep_til_ready is fixed_wait


def test_a_check_that_fails_on_changed_internals_leaves_dagster_alone(
    monkeypatch: pytest.MonkeyPatch, fresh_warnings
) -> None:
    def reworked_interval(self: InstanceConcurrencyContext) -> float:
        return self._next_check_at - time.time()  # an attribute the check's bare context does not have

    monkeypatch.setattr(InstanceConcurrencyContext, "interval_to_next_pending_claim_check", reworked_interval)
    with pytest.warns(UserWarning, match="pool_wait_sleeps not applied .*the check of the bug failed"):
        assert "pool_wait_sleeps" not in dagster_patches.apply()
    assert InstanceConcurrencyContext.interval_to_next_pending_claim_check is reworked_interval
