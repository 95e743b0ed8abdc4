"""dlt source for the Hacker News items API: one row per item (story, comment, job, poll, pollopt), merged on `id`.

Item ids grow with time, so the cursor is the highest id loaded: each run asks `/v0/maxitem.json` for the newest
id and fetches `/v0/item/<id>.json` for the ids above the cursor, at most `max_items` of the newest ones (a run after
a long pause skips the ids below that window). Items are fetched in parallel and yielded in id order; an id the API
has no item for answers `null` and is skipped.

Every field but `id` is optional (a deleted item is only `id`, `type`, `time`, `deleted`), so the column types are
declared: the first load creates every column, and a field missing from a whole load never changes a type, adds a
`__v_` variant column, or (for `kids` and `parts`, lists of ids) a child table.

A field of another JSON type never lands silently either: each declared field is converted to its declared type
before dlt sees it, accepting only the spellings `typed_value` lists (a boolean as `"true"`/`"false"` or `1`/`0`,
an integer as `"42"` or `42.0`); anything else fails the run with a `HackerNewsTypeError` naming the item, its day,
the column and the value, and nothing of the run is loaded (the cursor stays). dlt's schema contract
(`data_type: freeze`) refuses a variant column for a field nobody declared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dlt
import requests
from dlt.common.schema.typing import TSchemaContract
from dlt.sources.helpers.requests import Client

from extract.json_types import shown as _shown
from extract.json_types import typed_value

HN_API_URL = "https://hacker-news.firebaseio.com"
MAX_ITEM_PATH = "/v0/maxitem.json"
ITEM_PATH = "/v0/item/{id}.json"
# covers the recorded demo feed (300 items) in one run; at the live API's pace (~9 items a minute) a run every
# half hour or more often leaves no gap
DEFAULT_MAX_ITEMS = 300

ITEM_COLUMNS: dict[str, dict[str, Any]] = {
    "id": {"data_type": "bigint", "nullable": False},
    "type": {"data_type": "text"},  # story, comment, job, poll or pollopt
    "by": {"data_type": "text"},
    "time": {"data_type": "bigint"},  # unix seconds
    "text": {"data_type": "text"},  # HTML
    "title": {"data_type": "text"},
    "url": {"data_type": "text"},
    "score": {"data_type": "bigint"},
    "descendants": {"data_type": "bigint"},  # comments in a story's or poll's thread, when fetched
    "parent": {"data_type": "bigint"},  # a comment's story or comment
    "poll": {"data_type": "bigint"},  # a pollopt's poll
    "kids": {"data_type": "json"},  # ids of the direct replies
    "parts": {"data_type": "json"},  # ids of a poll's options
    "deleted": {"data_type": "bool"},
    "dead": {"data_type": "bool"},
    "_loaded_at": {"data_type": "timestamp", "timezone": True, "nullable": False},  # the run's load time
}
# new fields may appear (they land as new columns), but a value of another type never adds a variant column
SCHEMA_CONTRACT: TSchemaContract = {"tables": "evolve", "columns": "evolve", "data_type": "freeze"}


class HackerNewsError(RuntimeError):
    """The API refused a request or sent something that is not an item; the message names the url and item id."""


class HackerNewsTypeError(HackerNewsError):
    """A field of an item is not of its declared type, nor one of the spellings converted explicitly."""


def item_day(item: dict[str, Any]) -> str:
    """The UTC day an item was posted (`time`, unix seconds), or `unknown day`."""
    posted = item.get("time")
    if isinstance(posted, int | float) and not isinstance(posted, bool):
        return datetime.fromtimestamp(posted, UTC).date().isoformat()
    return "unknown day"


def typed_item(item: dict[str, Any], url: str) -> dict[str, Any]:
    """The item with every declared field in its declared type; undeclared fields pass as they are."""
    typed = dict(item)
    for name, value in item.items():
        if name not in ITEM_COLUMNS:
            continue
        data_type = ITEM_COLUMNS[name]["data_type"]
        try:
            typed[name] = typed_value(data_type, value)
        except ValueError:
            raise HackerNewsTypeError(
                f"Hacker News item {item['id']} at {display_url(url)} (posted {item_day(item)}): column `{name}` of "
                f"raw_hackernews.items is declared {data_type} but the API sent {_shown(value)}. Nothing of this run "
                "was loaded. Accepted spellings are listed in extract/json_types.py (`typed_value`); if the "
                "API changed the field's type for good, change its declared type there."
            ) from None
    return typed


def display_url(url: str) -> str:
    """The url without user info or query, for messages: a proxy url may hold credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _sample(text: str, limit: int = 200) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def _get_json(client: Client, url: str, what: str) -> Any:
    """The decoded body of a 200 answer (after the client's retries), or a HackerNewsError naming `what` and url."""
    where = display_url(url)
    try:
        response = client.get(url)
    except requests.RequestException as error:
        # requests' messages name the host and path, never user info
        raise HackerNewsError(
            f"Hacker News {what} at {where} failed after retries: {_sample(str(error), 500)}"
        ) from None
    if response.status_code != 200:
        raise HackerNewsError(
            f"Hacker News {what} at {where} answered {response.status_code} (after retries): {_sample(response.text)}"
        )
    try:
        return response.json()
    except ValueError:
        raise HackerNewsError(
            f"Hacker News {what} at {where} sent a body that is not JSON: {_sample(response.text)!r}"
        ) from None


def fetch_max_item(client: Client, base_url: str) -> int:
    """The newest item id."""
    url = f"{base_url.rstrip('/')}{MAX_ITEM_PATH}"
    max_item = _get_json(client, url, "maxitem")
    if not isinstance(max_item, int) or isinstance(max_item, bool) or max_item < 0:
        raise HackerNewsError(f"Hacker News maxitem at {display_url(url)} is not an item id: {max_item!r}")
    return max_item


def fetch_item(client: Client, base_url: str, item_id: int) -> dict[str, Any] | None:
    """Item `item_id` as the API sends it, or None when the API has no such item (a `null` body)."""
    url = f"{base_url.rstrip('/')}{ITEM_PATH.format(id=item_id)}"
    item = _get_json(client, url, f"item {item_id}")
    if item is None:
        return None
    if not isinstance(item, dict) or item.get("id") != item_id:
        raise HackerNewsError(
            f"Hacker News item {item_id} at {display_url(url)} is not an item object with id {item_id}: "
            f"{_sample(json.dumps(item))}"
        )
    return typed_item(item, url)


def ids_to_fetch(last_id: int, max_item: int, max_items: int) -> range:
    """The ids above `last_id`, at most the `max_items` newest up to `max_item`."""
    return range(max(last_id + 1, max_item - max_items + 1, 1), max_item + 1)


def fetch_items(client: Client, base_url: str, ids: Iterable[int], max_workers: int) -> Iterator[dict[str, Any]]:
    """The items of `ids` in id order, fetched by `max_workers` threads; null items are left out. On an error the
    requests not yet started are cancelled."""
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hackernews")
    try:
        for item in pool.map(lambda item_id: fetch_item(client, base_url, item_id), ids):
            if item is not None:
                yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dlt.source(name="hackernews", max_table_nesting=0)
def hackernews(
    base_url: str = HN_API_URL,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_workers: int = 8,
    max_attempts: int = 5,
    backoff_factor: float = 1.0,
    max_retry_delay: float = 300.0,
    timeout: float = 30.0,
) -> Any:
    """Hacker News items newer than the last run's, at most `max_items` per run, `max_workers` requests at a time;
    retries 429, 5xx and timeouts with exponential backoff, honouring Retry-After (capped at `max_retry_delay`)."""
    if max_items < 1 or max_workers < 1:
        raise ValueError(f"max_items and max_workers must be at least 1, got {max_items} and {max_workers}")
    client = Client(
        request_timeout=timeout,
        raise_for_status=False,
        request_max_attempts=max_attempts,
        request_backoff_factor=backoff_factor,
        request_max_retry_delay=max_retry_delay,
        respect_retry_after_header=True,
        max_connections=max_workers,
    )

    @dlt.resource(
        name="items",
        table_name="items",
        primary_key="id",
        write_disposition="merge",
        columns=ITEM_COLUMNS,
        schema_contract=SCHEMA_CONTRACT,
    )
    def items(
        last_id: dlt.sources.incremental[int] = dlt.sources.incremental("id", initial_value=0),  # noqa: B008 (dlt's idiom)
    ) -> Iterator[dict[str, Any]]:
        """Items with ids above the highest loaded one, oldest first, each stamped with the run's `_loaded_at`."""
        loaded_at = datetime.now(UTC)
        ids = ids_to_fetch(last_id.start_value, fetch_max_item(client, base_url), max_items)
        for item in fetch_items(client, base_url, ids, max_workers):
            yield {**item, "_loaded_at": loaded_at}

    return items
