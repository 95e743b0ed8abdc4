"""NeoWs feed days as Dagster daily partitions (UTC), and the window of days a run loads by default.

A run may cover one partition (the daily schedule) or a range (a backfill, `elt run`): the asset loads the whole
range in one dlt load, 7 feed days per API request.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache

import dagster as dg

from orchestration.environment import Environment, SourceSettings
from orchestration.nasa.resources import NasaApiResource

DEMO_START, DEMO_END = "2018-09-05", "2018-09-11"  # the recorded days in extract/nasa/recorded
DEV_WINDOW_DAYS = 3  # dev and branch load at most this many feed days per run unless asked (ignore_date_limits)


@cache
def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """One partition per feed day from `start_date` (YYYY-MM-DD) to yesterday, in UTC like the feed's dates."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def nasa_partitions(sources: SourceSettings) -> dg.DailyPartitionsDefinition:
    """The NeoWs partitions, starting at `ELT_NASA_START_DATE` (default: the first recorded demo day)."""
    return daily_partitions(sources.nasa_start_date)


def feed_days(window: dg.TimeWindow) -> tuple[date, date]:
    """The first and last feed day (both inclusive) of a run's partition time window (end exclusive)."""
    return window.start.date(), (window.end - timedelta(days=1)).date()


def run_window(nasa_api: NasaApiResource, env: Environment, today: date | None = None) -> tuple[str, str]:
    """The partition keys (first, last) a whole-pipeline run loads: the recorded days when the replay serves,
    else yesterday in prod and the dev window ending yesterday in dev and branch."""
    if nasa_api.replays:
        return DEMO_START, DEMO_END
    yesterday = (today or datetime.now(UTC).date()) - timedelta(days=1)
    days = 1 if env.name == "prod" else DEV_WINDOW_DAYS
    return (yesterday - timedelta(days=days - 1)).isoformat(), yesterday.isoformat()
