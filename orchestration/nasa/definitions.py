"""The NASA NeoWs slice's assets, job and schedule (resources are bound in orchestration/definitions.py)."""

from __future__ import annotations

import dagster as dg

from orchestration.environment import Environment, SourceSettings, source_settings
from orchestration.lib.automation import default_schedule_status
from orchestration.nasa.assets import build_nasa_assets

NASA_DAILY_JOB = "nasa_daily"


def slice_definitions(env: Environment, sources: SourceSettings | None = None) -> dg.Definitions:
    """The NeoWs asset over daily partitions from `sources.nasa_start_date`, the job `nasa_daily`, and its
    schedule at 06:00 UTC for yesterday's partition (running by default in prod only)."""
    sources = sources or source_settings()
    nasa_assets = build_nasa_assets(sources.nasa_start_date)
    nasa_daily = dg.define_asset_job(
        NASA_DAILY_JOB,
        # without the dbt source tests on raw_nasa (asset checks run by the dbt op): they run with `dbt build`
        selection=dg.AssetSelection.assets(nasa_assets).without_checks(),
        description="Load NeoWs feed days into raw_nasa; a range of partitions loads in one run.",
    )
    # a daily partitioned job's schedule targets the last complete day: at 06:00 UTC on D, partition D-1
    nasa_daily_schedule = dg.build_schedule_from_partitioned_job(
        nasa_daily,
        name=f"{NASA_DAILY_JOB}_schedule",
        hour_of_day=6,
        minute_of_hour=0,
        default_status=default_schedule_status(env),
    )
    return dg.Definitions(assets=[nasa_assets], jobs=[nasa_daily], schedules=[nasa_daily_schedule])
