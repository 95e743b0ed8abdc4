"""The NeoWs API as a Dagster resource: the real API (`NASA_API_KEY`), another endpoint (`ELT_NASA_BASE_URL`), or,
with neither set, the recorded demo replay."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from extract.nasa.replay import ReplayServer
from extract.nasa.source import NASA_API_URL, display_url

DEMO_KEY = "DEMO_KEY"


@dataclass(frozen=True)
class NeowsEndpoint:
    base_url: str
    api_key: str
    replayed: bool

    @property
    def label(self) -> str:
        """Where the data came from, for logs and metadata: never credentials a url may hold."""
        if self.replayed:
            return "recorded demo replay"
        return display_url(self.base_url)


class NasaApiResource(dg.ConfigurableResource):
    """The NeoWs API: the real one with `api_key`, another with `base_url`, else the recorded demo replay."""

    api_key: str | None = None
    base_url: str | None = None

    @property
    def replays(self) -> bool:
        """True when runs read the bundled recorded days (no key, no base url)."""
        return not (self.api_key or self.base_url)

    @contextmanager
    def endpoint(self) -> Iterator[NeowsEndpoint]:
        """Where to send feed requests; a replay server lives as long as the `with` block."""
        if not self.replays:
            yield NeowsEndpoint(self.base_url or NASA_API_URL, self.api_key or DEMO_KEY, replayed=False)
            return
        with ReplayServer() as replay:
            yield NeowsEndpoint(replay.base_url, DEMO_KEY, replayed=True)


@dg.definitions
def resources() -> dg.Definitions:
    """The key stays in the environment (`dg.EnvVar`): never in the definitions, the UI or a log."""
    return dg.Definitions(
        resources={
            "nasa_api": NasaApiResource(
                api_key=dg.EnvVar("NASA_API_KEY") if os.environ.get("NASA_API_KEY") else None,
                base_url=os.environ.get("ELT_NASA_BASE_URL") or None,
            )
        }
    )
