"""The `hackernews_load` job and its schedule: every hour, the items posted since the last run (prod only).
`ELT_HACKERNEWS_CRON` moves the schedule (a cron expression, UTC; default `15 * * * *`)."""

import os

import dagster as dg

from orchestration.lib.asset_keys import table_asset_key
from orchestration.lib.automation import default_schedule_status
from orchestration.lib.environment import resolve

HACKERNEWS_JOB = "hackernews_load"
CRON_SETTING, DEFAULT_CRON = "ELT_HACKERNEWS_CRON", "15 * * * *"

hackernews_load = dg.define_asset_job(
    HACKERNEWS_JOB,
    # without the dbt source tests on raw_hackernews (asset checks run by the dbt op): they run with `dbt build`
    selection=dg.AssetSelection.assets(table_asset_key("raw_hackernews", "items")).without_checks(),
    description="Load the Hacker News items newer than the last loaded one into raw_hackernews.items.",
)


@dg.definitions
def schedules() -> dg.Definitions:
    hourly = dg.ScheduleDefinition(
        name=f"{HACKERNEWS_JOB}_hourly_schedule",
        job=hackernews_load,
        cron_schedule=os.environ.get(CRON_SETTING) or DEFAULT_CRON,
        execution_timezone="UTC",
        default_status=default_schedule_status(resolve()),
    )
    return dg.Definitions(jobs=[hackernews_load], schedules=[hourly])
