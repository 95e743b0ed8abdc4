"""NeoWs feed days as Dagster daily partitions (UTC), and the days a whole-pipeline run loads.

A run may cover one partition (the daily schedule) or a range (a backfill, `elt run`): the asset loads the whole
range in one dlt load, 7 feed days per API request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache

import dagster as dg

from extract.nasa.replay import RECORDED_DIR, recorded_days
from orchestration.defs.nasa.resources import NasaApiResource
from orchestration.lib.environment import Environment, iso_date_setting
from orchestration.lib.planning import PlanContext

START_DATE_SETTING = "ELT_NASA_START_DATE"
DEMO_START, DEMO_END = min(recorded_days(RECORDED_DIR)), max(recorded_days(RECORDED_DIR))  # the recorded days
DEV_WINDOW_DAYS = 3  # dev and branch load at most this many feed days per run unless asked (ignore_date_limits)


def start_date(environ: Mapping[str, str] | None = None) -> str:
    """The first NeoWs daily partition: `ELT_NASA_START_DATE`, default the first recorded demo day."""
    return iso_date_setting(START_DATE_SETTING, environ) or DEMO_START


@cache
def daily_partitions(first_day: str) -> dg.DailyPartitionsDefinition:
    """One partition per feed day from `first_day` (YYYY-MM-DD) to yesterday, in UTC like the feed's dates."""
    return dg.DailyPartitionsDefinition(start_date=first_day, timezone="UTC")


def feed_days(window: dg.TimeWindow) -> tuple[date, date]:
    """The first and last feed day (both inclusive) of a run's partition time window (end exclusive)."""
    return window.start.date(), (window.end - timedelta(days=1)).date()


def run_window(nasa_api: NasaApiResource, env: Environment, today: date | None = None) -> tuple[str, str]:
    """The partition keys (first, last) a whole-pipeline run covers: the recorded days when the replay serves,
    else yesterday in prod and the dev window ending yesterday in dev and branch."""
    if nasa_api.replays:
        return DEMO_START, DEMO_END
    yesterday = (today or datetime.now(UTC).date()) - timedelta(days=1)
    days = 1 if env.name == "prod" else DEV_WINDOW_DAYS
    return (yesterday - timedelta(days=days - 1)).isoformat(), yesterday.isoformat()


def pending_feed_days(context: PlanContext) -> list[str]:
    """What `elt run` loads: the days of `run_window` not loaded yet (a loaded day merges, so re-runs are safe)."""
    first, last = run_window(context.resources["nasa_api"], context.env)
    done = context.instance.get_materialized_partitions(context.asset_key)
    keys = context.partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    return [key for key in keys if key not in done]
