"""dlt source for the NASA NeoWs feed: one row per near-earth object per feed day, merged on that pair.

The feed answers at most 7 days per request, so a longer range is fetched in 7-day windows. Each row is the
whole neo object as the API sends it (minus `links`, which carry the api key), plus `close_approach_date`, the
feed day; `close_approach_data` stays nested and lands in the child table `asteroids__close_approach_data`.
Numbers inside `relative_velocity` and `miss_distance` stay strings: dbt casts them.

Responses vary: older ones lack `id`, `is_sentry_object` and `close_approach_date_full`, and a magnitude may come as
`26` one day and `26.8` the next. The column types are declared so that every shape lands in the same columns
(missing fields as NULL) instead of dlt inferring a type per load and adding `__v_double` variant columns.

Type drift never lands silently: every declared field is converted to its declared type here, before dlt sees it,
accepting only the spellings listed in `typed_value` (a boolean as `"true"`/`"false"` or `1`/`0`, a number as a
numeric string, ...); any other value fails the whole run with a `NeowsTypeError` naming the feed day, the object,
the column and the value. dlt's schema contract (`data_type: freeze`) covers fields nobody declared: a value that
would need a `__v_<type>` variant column fails the load instead of adding one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

import dlt
import requests
from dlt.common.schema.typing import TSchemaContract
from dlt.sources.helpers.requests import Client

from extract.json_types import shown as _shown
from extract.json_types import typed_value

NASA_API_URL = "https://api.nasa.gov"
FEED_PATH = "/neo/rest/v1/feed"
MAX_WINDOW_DAYS = 7


_DIAMETER_COLUMNS = {
    f"estimated_diameter__{unit}__estimated_diameter_{bound}": {"data_type": "double"}
    for unit in ("kilometers", "meters", "miles", "feet")
    for bound in ("min", "max")
}
ASTEROID_COLUMNS: dict[str, dict[str, Any]] = {
    "close_approach_date": {"data_type": "date", "nullable": False},  # the feed day; part of the merge key
    "neo_reference_id": {"data_type": "text", "nullable": False},
    "id": {"data_type": "text"},  # newer responses only
    "name": {"data_type": "text"},
    "nasa_jpl_url": {"data_type": "text"},
    "absolute_magnitude_h": {"data_type": "double"},
    **_DIAMETER_COLUMNS,
    "is_potentially_hazardous_asteroid": {"data_type": "bool"},
    "is_sentry_object": {"data_type": "bool"},  # newer responses only
    "sentry_data": {"data_type": "text"},  # newer responses, sentry objects only
}
CLOSE_APPROACH_COLUMNS: dict[str, dict[str, Any]] = {
    "close_approach_date": {"data_type": "text"},  # `YYYY-MM-DD`, as sent
    "close_approach_date_full": {"data_type": "text"},  # newer responses only, e.g. `2018-Sep-05 07:04`
    "epoch_date_close_approach": {"data_type": "bigint"},  # milliseconds
    **{
        f"relative_velocity__{unit}": {"data_type": "text"}
        for unit in ("kilometers_per_second", "kilometers_per_hour", "miles_per_hour")
    },
    **{f"miss_distance__{unit}": {"data_type": "text"} for unit in ("astronomical", "lunar", "kilometers", "miles")},
    "orbiting_body": {"data_type": "text"},
}
# dlt's own columns of a nested table, declared so the table can be created before its first row arrives (a window
# without objects on a fresh warehouse; see `create_missing_tables`): the same hints dlt's normalizer gives them
NESTED_TABLE_DLT_COLUMNS: dict[str, dict[str, Any]] = {
    "_dlt_root_id": {"data_type": "text", "nullable": False, "root_key": True},
    "_dlt_parent_id": {"data_type": "text", "nullable": False, "parent_key": True},
    "_dlt_list_idx": {"data_type": "bigint", "nullable": False},
    "_dlt_id": {"data_type": "text", "nullable": False, "unique": True, "row_key": True},
}
# new fields may appear (they land as new columns), but a value of another type never adds a variant column
SCHEMA_CONTRACT: TSchemaContract = {"tables": "evolve", "columns": "evolve", "data_type": "freeze"}
TABLES = ("asteroids", "asteroids__close_approach_data")


class NeowsError(RuntimeError):
    """The feed refused the request or sent something that is not a feed; the message says which window."""


class NeowsTypeError(NeowsError):
    """A field's value is not of its declared type, nor one of the spellings converted explicitly."""


def typed_fields(
    obj: dict[str, Any], columns: dict[str, dict[str, Any]], where: str, table: str, prefix: str = ""
) -> dict[str, Any]:
    """`obj` with each declared column (nested objects flattened with `__`, as dlt names them) converted by
    `typed_value`; undeclared fields pass as they are. A NeowsTypeError names `where`, table, column and value."""

    def drift(column: str, value: Any, expected: str) -> NeowsTypeError:
        return NeowsTypeError(
            f"{where}: column `{column}` of raw_nasa.{table} is declared {expected} but the feed sent {_shown(value)}. "
            "Nothing of this run was loaded. Accepted spellings are listed in extract/json_types.py "
            "(`typed_value`); if the API changed the field's type for good, change its declared type there."
        )

    typed: dict[str, Any] = {}
    for key, value in obj.items():
        column = f"{prefix}{key}"
        if column in columns:
            data_type = columns[column]["data_type"]
            try:
                typed[key] = typed_value(data_type, value)
            except ValueError:
                raise drift(column, value, data_type) from None
        elif isinstance(value, dict):
            typed[key] = typed_fields(value, columns, where, table, f"{column}__")
        elif value is not None and any(name.startswith(f"{column}__") for name in columns):
            raise drift(column, value, "an object")
        else:
            typed[key] = value
    return typed


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


def display_url(url: str) -> str:
    """The url without user info or query, for messages: a proxy url may hold credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _sample(text: str, api_key: str, limit: int = 200) -> str:
    """The start of a body for an error message, with the api key masked."""
    text = text.replace(api_key, "***") if api_key else text
    return text[:limit] + ("..." if len(text) > limit else "")


def fetch_feed(client: Client, base_url: str, api_key: str, first: date, last: date) -> dict[str, list[Any]]:
    """`near_earth_objects` of one window, or a NeowsError that never shows the api key."""
    window, where = f"{first}..{last}", display_url(base_url)
    params = {"start_date": first.isoformat(), "end_date": last.isoformat(), "api_key": api_key}
    try:
        response = client.get(f"{base_url.rstrip('/')}{FEED_PATH}", params=params)
    except requests.RequestException as error:  # its message holds the url, api key included
        raise NeowsError(f"NeoWs feed {window} at {where}: {_sample(str(error), api_key, 500)}") from None
    if response.status_code == 403:
        raise NeowsError(
            f"NeoWs refused the api key (403) for feed {window} at {where}: set NASA_API_KEY to a valid "
            "key from https://api.nasa.gov, or unset it to use the recorded demo data. "
            f"Response: {_sample(response.text, api_key)}"
        )
    if response.status_code != 200:
        raise NeowsError(
            f"NeoWs feed {window} at {where} answered {response.status_code} (after retries): "
            f"{_sample(response.text, api_key)}"
        )
    try:
        near_earth_objects = response.json()["near_earth_objects"]
        _check_shape(near_earth_objects)
    except (ValueError, KeyError, TypeError) as error:
        raise NeowsError(
            f"NeoWs feed {window} at {where} sent a malformed body ({type(error).__name__}: {error}); "
            "expected {'near_earth_objects': {'YYYY-MM-DD': [{'neo_reference_id': ..., ...}]}}, "
            f"got: {_sample(response.text, api_key)}"
        ) from None
    return near_earth_objects


def _check_shape(near_earth_objects: Any) -> None:
    """Raise TypeError/ValueError unless the body is {feed day: [neo with a neo_reference_id]}: the merge key."""
    if not isinstance(near_earth_objects, dict):
        raise TypeError("near_earth_objects is not {date: [neo, ...]}")
    for day, objects in near_earth_objects.items():
        date.fromisoformat(day)
        if not isinstance(objects, list):
            raise TypeError(f"near_earth_objects[{day!r}] is not a list")
        for index, neo in enumerate(objects):
            if not isinstance(neo, dict) or not neo.get("neo_reference_id"):
                raise ValueError(f"near_earth_objects[{day!r}][{index}] has no neo_reference_id")


def asteroid_row(neo: dict[str, Any], day: str) -> dict[str, Any]:
    """The neo as sent, without the links that carry the api key (`links`, the query of `sentry_data`), every
    declared field of it and of its close approaches in its declared type (else a NeowsTypeError)."""
    row = {key: value for key, value in neo.items() if key != "links"}
    if isinstance(row.get("sentry_data"), str):
        row["sentry_data"] = row["sentry_data"].split("?")[0]
    where = f"NeoWs feed day {day}, object {neo['neo_reference_id']}"
    approaches = row.pop("close_approach_data", None)
    row = typed_fields({**row, "close_approach_date": day}, ASTEROID_COLUMNS, where, "asteroids")
    if approaches is not None:
        if not isinstance(approaches, list) or not all(isinstance(approach, dict) for approach in approaches):
            raise NeowsTypeError(
                f"{where}: `close_approach_data` is a list of objects (the table "
                f"raw_nasa.asteroids__close_approach_data) but the feed sent {_shown(approaches)}. "
                "Nothing of this run was loaded."
            )
        row["close_approach_data"] = [
            typed_fields(approach, CLOSE_APPROACH_COLUMNS, f"{where}, close approach {index}", TABLES[1])
            for index, approach in enumerate(approaches)
        ]
    return row


def create_missing_tables(pipeline: dlt.Pipeline) -> list[str]:
    """Create the source's tables the destination lacks, empty, with their declared columns; returns their names.

    dlt creates a table when rows reach it: after a window without any object the parent table exists (the resource
    yields dlt's `materialize_table_schema()`), but the close-approach table, a nested table, would not, and the
    dbt models over it would fail on a fresh warehouse. Its schema (declared columns, dlt's own) is in the
    pipeline's schema already; this runs the same DDL dlt would (`update_stored_schema`), for those tables only."""
    with pipeline.destination_client() as client:
        missing = [
            name
            for name, columns in client.get_storage_tables(TABLES)
            if not columns and name in pipeline.default_schema.tables
        ]
        if missing:
            client.update_stored_schema(only_tables=missing, force=True)
    return missing


@dlt.source(name="neows")
def neows(
    start_date: date,
    end_date: date,
    api_key: str,
    base_url: str = NASA_API_URL,
    max_attempts: int = 5,
    backoff_factor: float = 1.0,
    max_retry_delay: float = 300.0,
    timeout: float = 60.0,
) -> Any:
    """NeoWs feed objects for [start_date, end_date]; retries 429, 5xx and timeouts with exponential backoff,
    honouring Retry-After (capped at `max_retry_delay` seconds)."""
    client = Client(
        request_timeout=timeout,
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
        columns=ASTEROID_COLUMNS,
        nested_hints={
            "close_approach_data": dlt.mark.make_nested_hints(
                columns={**CLOSE_APPROACH_COLUMNS, **NESTED_TABLE_DLT_COLUMNS}
            )
        },
        schema_contract=SCHEMA_CONTRACT,
    )
    def asteroids() -> Iterator[list[dict[str, Any]]]:
        """Near-earth objects from the NASA NeoWs feed, one row per object and feed day."""
        rows = 0
        for first, last in feed_windows(start_date, end_date):
            near_earth_objects = fetch_feed(client, base_url, api_key, first, last)
            window = [asteroid_row(neo, day) for day, objects in sorted(near_earth_objects.items()) for neo in objects]
            rows += len(window)
            yield window
        if not rows:  # a window without objects still creates the table (empty), so the models over it build
            yield dlt.mark.materialize_table_schema()

    return asteroids
