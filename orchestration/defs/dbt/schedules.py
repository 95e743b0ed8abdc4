"""The `dbt_build` job (every model and test) and its schedule, half an hour after the loads."""

import dagster as dg

from orchestration.defs.dbt.assets import dbt_models
from orchestration.lib.automation import default_schedule_status
from orchestration.lib.environment import resolve

TRANSFORM_JOB = "dbt_build"

dbt_build = dg.define_asset_job(
    TRANSFORM_JOB,
    selection=dg.AssetSelection.assets(dbt_models),
    description="`dbt build` of every model and test, on what the extract assets loaded.",
)


@dg.definitions
def schedules() -> dg.Definitions:
    schedule = dg.ScheduleDefinition(
        name=f"{TRANSFORM_JOB}_schedule",
        job=dbt_build,
        cron_schedule="30 6,12,18 * * *",  # half an hour after the 06:00 loads and the 12:00 / 18:00 orders loads
        execution_timezone="UTC",
        default_status=default_schedule_status(resolve()),
    )
    return dg.Definitions(jobs=[dbt_build], schedules=[schedule])
