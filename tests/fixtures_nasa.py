"""Fixtures for the NASA source: the NeoWs replay server on 127.0.0.1 once per session, a scripted HTTP server for
error paths, and a writer of feed days in the recorded files' shape."""

import json
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from extract.nasa.replay import RECORDED_DIR, ReplayServer
from extract.nasa.source import NeowsError


@pytest.fixture(scope="session")
def nasa_replay_url() -> Iterator[str]:
    """Base url of the replay server over extract/nasa/recorded (the demo days 2018-09-05 .. 2018-09-11)."""
    with ReplayServer(RECORDED_DIR) as server:
        yield server.base_url


def write_feed_days(folder: Path, neos_by_day: Mapping[date, list[dict[str, Any]]]) -> Path:
    """One `feed_<day>.generated.json` per day in `folder`, served by `ReplayServer(folder)`."""
    folder.mkdir(parents=True, exist_ok=True)
    for day, neos in neos_by_day.items():
        feed = {"element_count": len(neos), "near_earth_objects": {str(day): neos}}
        (folder / f"feed_{day}.generated.json").write_text(json.dumps(feed))
    return folder


def neows_error(error: BaseException) -> NeowsError:
    """The NeowsError under dlt's wrapping exceptions."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, NeowsError):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None, f"no NeowsError in {error!r}"
    return seen


def demo_row_counts(con) -> dict[str, int]:
    """What one `elt run` on the recorded days lands, per raw table and mart (derived from the recorded files)."""
    neos = [
        neo
        for path in sorted(RECORDED_DIR.glob("feed_*.json"))
        for day in json.loads(path.read_text())["near_earth_objects"].values()
        for neo in day
    ]
    approaches = [approach for neo in neos for approach in neo["close_approach_data"]]
    return {
        "raw_nasa.asteroids": len(neos),
        "raw_nasa.asteroids__close_approach_data": len(approaches),
        "marts.fct_close_approaches": len(approaches),
        "marts.fct_close_approaches_daily": len({approach["close_approach_date"] for approach in approaches}),
        "marts.dim_asteroids": len({neo["neo_reference_id"] for neo in neos}),
    }
