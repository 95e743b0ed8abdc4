"""dlt source for the NASA NeoWs feed: one row per near-earth object per feed day, merged on that pair.

The feed answers at most 7 days per request, so a longer range is fetched in 7-day windows. Each row is the
whole neo object as the API sends it (minus `links`, which carry the api key), plus `close_approach_date`, the
feed day; `close_approach_data` stays nested and lands in the child table `asteroids__close_approach_data`.
Numbers inside `relative_velocity` and `miss_distance` stay strings: dbt casts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import dlt
import requests
from dlt.sources.helpers.requests import Client

NASA_API_URL = "https://api.nasa.gov"
FEED_PATH = "/neo/rest/v1/feed"
MAX_WINDOW_DAYS = 7


class NeowsError(RuntimeError):
    """The feed refused the request or sent something that is not a feed; the message says which window."""


def feed_windows(start_date: date, end_date: date) -> list[tuple[date, date]]:
    """[start, end] cut into consecutive windows of at most 7 days, both ends inclusive."""
    if end_date < start_date:
        raise ValueError(f"end_date {end_date} is before start_date {start_date}")
    windows = []
    first = start_date
    while first <= end_date:
        last = min(first + timedelta(days=MAX_WINDOW_DAYS - 1), end_date)
        windows.append((first, last))
        first = last + timedelta(days=1)
    return windows


def _sample(text: str, api_key: str, limit: int = 200) -> str:
    """The start of a body for an error message, with the api key masked."""
    text = text.replace(api_key, "***") if api_key else text
    return text[:limit] + ("..." if len(text) > limit else "")


def fetch_feed(client: Client, base_url: str, api_key: str, first: date, last: date) -> dict[str, list[Any]]:
    """`near_earth_objects` of one window, or a NeowsError that never shows the api key."""
    window = f"{first}..{last}"
    params = {"start_date": first.isoformat(), "end_date": last.isoformat(), "api_key": api_key}
    try:
        response = client.get(f"{base_url.rstrip('/')}{FEED_PATH}", params=params)
    except requests.RequestException as error:  # its message holds the url, api key included
        raise NeowsError(f"NeoWs feed {window} at {base_url}: {_sample(str(error), api_key, 500)}") from None
    if response.status_code == 403:
        raise NeowsError(
            f"NeoWs refused the api key (403) for feed {window} at {base_url}: set NASA_API_KEY to a valid "
            "key from https://api.nasa.gov, or unset it to use the recorded demo data. "
            f"Response: {_sample(response.text, api_key)}"
        )
    if response.status_code != 200:
        raise NeowsError(
            f"NeoWs feed {window} at {base_url} answered {response.status_code} (after retries): "
            f"{_sample(response.text, api_key)}"
        )
    try:
        near_earth_objects = response.json()["near_earth_objects"]
        if not isinstance(near_earth_objects, dict) or not all(
            isinstance(objects, list) for objects in near_earth_objects.values()
        ):
            raise TypeError("near_earth_objects is not {date: [neo, ...]}")
    except (ValueError, KeyError, TypeError) as error:
        raise NeowsError(
            f"NeoWs feed {window} at {base_url} sent a malformed body ({type(error).__name__}: {error}); "
            f"expected {{'near_earth_objects': {{date: [...]}}}}, got: {_sample(response.text, api_key)}"
        ) from None
    return near_earth_objects


@dlt.source(name="neows")
def neows(
    start_date: date,
    end_date: date,
    api_key: str,
    base_url: str = NASA_API_URL,
    max_attempts: int = 5,
    backoff_factor: float = 1.0,
    max_retry_delay: float = 300.0,
) -> Any:
    """NeoWs feed objects for [start_date, end_date]; retries 429/5xx with backoff, honours Retry-After."""
    client = Client(
        raise_for_status=False,
        request_max_attempts=max_attempts,
        request_backoff_factor=backoff_factor,
        request_max_retry_delay=max_retry_delay,
        respect_retry_after_header=True,
    )

    @dlt.resource(
        name="asteroids",
        write_disposition="merge",
        primary_key=("neo_reference_id", "close_approach_date"),
        columns={"close_approach_date": {"data_type": "date", "nullable": False}},
    )
    def asteroids() -> Iterator[list[dict[str, Any]]]:
        """Near-earth objects from the NASA NeoWs feed, one row per object and feed day."""
        for first, last in feed_windows(start_date, end_date):
            near_earth_objects = fetch_feed(client, base_url, api_key, first, last)
            yield [
                {**{k: v for k, v in neo.items() if k != "links"}, "close_approach_date": day}
                for day, objects in sorted(near_earth_objects.items())
                for neo in objects
            ]

    return asteroids
