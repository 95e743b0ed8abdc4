"""Fixtures for the NASA source: the NeoWs replay server on 127.0.0.1 once per session, a scripted HTTP server for
error paths, and a writer of feed days in the recorded files' shape."""

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


@dataclass
class ScriptedServer:
    base_url: str
    requests: int = 0


@contextmanager
def scripted_server(*responses: tuple) -> Iterator[ScriptedServer]:
    """A tiny HTTP server answering each GET with the next (status, headers, body[, delay seconds]); the last
    response repeats. `.requests` counts the requests it got."""
    queue = list(responses)
    lock = threading.Lock()
    scripted = ScriptedServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with lock:
                scripted.requests += 1
                status, headers, body, *delay = queue.pop(0) if len(queue) > 1 else queue[0]
            time.sleep(delay[0] if delay else 0)
            payload = body.encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    scripted.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield scripted
    finally:
        server.shutdown()
        server.server_close()


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
