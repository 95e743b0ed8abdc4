"""Fixtures for the Hacker News source: the replay server over the generated demo items once per session, and the
row counts a demo load must land, derived from that file."""

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from extract.hackernews.replay import RECORDED_ITEMS, HackerNewsReplay
from extract.hackernews.source import DEFAULT_MAX_ITEMS, HackerNewsError


@pytest.fixture(scope="session")
def hackernews_replay_url() -> Iterator[str]:
    """Base url of the replay server over extract/hackernews/recorded/items.generated.json (maxitem: its last id)."""
    with HackerNewsReplay(RECORDED_ITEMS) as server:
        yield server.base_url


def demo_row_counts(
    con: duckdb.DuckDBPyConnection, recorded_file: Path = RECORDED_ITEMS, max_items: int = DEFAULT_MAX_ITEMS
) -> dict[str, int]:
    """Rows in `raw_hackernews.items` and in each Hacker News mart after one run against the replay with
    `max_items` (the source's default loads the whole demo file), computed by DuckDB from the recorded file.

    Raw: every item among the `max_items` newest ids (null ids are not in the file). The daily mart: one row per
    UTC day from the first to the last day a live (not deleted, not dead) story or comment of those was posted."""
    [(raw_items, mart_days)] = con.execute(
        """
        with recorded as (
            select * from read_json($recorded_file, format = 'array')
        ),
        loaded as (
            select * from recorded where id > (select max(id) from recorded) - $max_items
        ),
        live_posts as (
            select cast(timezone('UTC', to_timestamp(time)) as date) as posted_date
            from loaded
            where type in ('story', 'comment') and not coalesce(deleted, false) and not coalesce(dead, false)
        )
        select
            (select count(*) from loaded),
            coalesce((select max(posted_date) - min(posted_date) + 1 from live_posts), 0)
        """,
        {"recorded_file": str(recorded_file), "max_items": max_items},
    ).fetchall()
    return {"raw_hackernews.items": raw_items, "marts.fct_hackernews_stories_daily": mart_days}


def hackernews_error(error: BaseException) -> HackerNewsError:
    """The HackerNewsError under dlt's wrapping exceptions."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, HackerNewsError):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None, f"no HackerNewsError in {error!r}"
    return seen
