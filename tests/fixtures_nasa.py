"""Fixtures for the NASA source: the NeoWs replay server on 127.0.0.1, once per session."""

from collections.abc import Iterator

import pytest

from extract.nasa.replay import RECORDED_DIR, ReplayServer


@pytest.fixture(scope="session")
def nasa_replay_url() -> Iterator[str]:
    """Base url of the replay server over extract/nasa/recorded (the demo days 2018-09-05 .. 2018-09-11)."""
    with ReplayServer(RECORDED_DIR) as server:
        yield server.base_url
