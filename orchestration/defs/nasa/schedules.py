"""The `nasa_daily` job and its schedule: at 06:00 UTC, yesterday's feed day (running by default in prod only)."""

import dagster as dg

from orchestration.lib.asset_keys import table_asset_key
from orchestration.lib.automation import default_schedule_status
from orchestration.lib.environment import resolve

NASA_DAILY_JOB = "nasa_daily"

nasa_daily = dg.define_asset_job(
    NASA_DAILY_JOB,
    # without the dbt source tests on raw_nasa (asset checks run by the dbt op): they run with `dbt build`
    selection=dg.AssetSelection.assets(table_asset_key("raw_nasa", "asteroids")).without_checks(),
    description="Load NeoWs feed days into raw_nasa; a range of partitions loads in one run.",
)


@dg.definitions
def schedules() -> dg.Definitions:
    # a daily partitioned job's schedule targets the last complete day: at 06:00 UTC on D, partition D-1
    nasa_daily_schedule = dg.build_schedule_from_partitioned_job(
        nasa_daily,
        name=f"{NASA_DAILY_JOB}_schedule",
        hour_of_day=6,
        minute_of_hour=0,
        default_status=default_schedule_status(resolve()),
    )
    return dg.Definitions(jobs=[nasa_daily], schedules=[nasa_daily_schedule])
