"""The Hacker News API: `ELT_HACKERNEWS_BASE_URL` (the real API is https://hacker-news.firebaseio.com), else the
generated demo items served by a replay server on 127.0.0.1 for the duration of the step."""
# no `from __future__ import annotations`: Dagster reads resource field annotations at definition time

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from extract.hackernews.replay import HackerNewsReplay
from extract.hackernews.source import DEFAULT_MAX_ITEMS, display_url

BASE_URL_SETTING = "ELT_HACKERNEWS_BASE_URL"
MAX_ITEMS_SETTING = "ELT_HACKERNEWS_MAX_ITEMS"


class HackerNewsApiResource(dg.ConfigurableResource):
    """The HN items API at `base_url`, or the demo replay without one; `max_items` bounds a run (the newest)."""

    base_url: str | None = None
    max_items: int = DEFAULT_MAX_ITEMS

    @contextmanager
    def endpoint(self) -> Iterator[tuple[str, str]]:
        """(base url, label for logs and metadata); a replay server lives as long as the `with` block."""
        if self.base_url:
            yield self.base_url, display_url(self.base_url)
            return
        with HackerNewsReplay() as replay:
            yield replay.base_url, "generated demo items (replay)"


@dg.definitions
def resources() -> dg.Definitions:
    max_items = os.environ.get(MAX_ITEMS_SETTING)
    return dg.Definitions(
        resources={
            "hackernews_api": HackerNewsApiResource(
                base_url=os.environ.get(BASE_URL_SETTING) or None,
                max_items=int(max_items) if max_items else DEFAULT_MAX_ITEMS,
            )
        }
    )
