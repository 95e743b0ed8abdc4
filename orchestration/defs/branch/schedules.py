"""The daily sweep of leftover PR clones, at 05:00 UTC (running by default in prod only)."""

import dagster as dg

from orchestration.branch.clones import DEFAULT_MAX_AGE_DAYS
from orchestration.defs.branch.jobs import SweepConfig, branch_sweep
from orchestration.lib.automation import default_schedule_status
from orchestration.lib.environment import resolve


@dg.definitions
def schedules() -> dg.Definitions:
    daily = dg.ScheduleDefinition(
        name="branch_sweep_daily",
        job=branch_sweep,
        cron_schedule="0 5 * * *",
        execution_timezone="UTC",
        run_config=dg.RunConfig(ops={"sweep_branch_clones": SweepConfig(max_age_days=DEFAULT_MAX_AGE_DAYS)}),
        default_status=default_schedule_status(resolve()),
    )
    return dg.Definitions(schedules=[daily])
