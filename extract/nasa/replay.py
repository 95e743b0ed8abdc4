"""A local stand-in for the NeoWs feed API that serves recorded days, so the demo and tests run offline.

`GET /neo/rest/v1/feed?start_date=&end_date=&api_key=` answers like the real API: the recorded days of the
window merged into one response, 400 for a malformed or longer than 7-day window, 403 without an api_key, and
404 naming the first day of the window that has no recording.
Serve by hand: `uv run python -m extract.nasa.replay [--port 8765]`.
"""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from extract.local_server import LocalServer, QuietJsonHandler, serve_until_interrupted

RECORDED_DIR = Path(__file__).resolve().parent / "recorded"
FEED_PATH = "/neo/rest/v1/feed"
MAX_WINDOW_DAYS = 7


def recorded_days(recorded_dir: Path) -> dict[str, Path]:
    """Feed day -> its file: `feed_<day>.json` (real) or `feed_<day>.generated.json`."""
    return {path.name.split(".")[0].removeprefix("feed_"): path for path in sorted(recorded_dir.glob("feed_*.json"))}


class FeedError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_window(query: dict[str, list[str]]) -> tuple[date, date]:
    try:
        start = date.fromisoformat(query["start_date"][0])
        end = date.fromisoformat(query["end_date"][0])
    except (KeyError, ValueError):
        raise FeedError(
            HTTPStatus.BAD_REQUEST,
            "Date Format Exception - Expected format (yyyy-mm-dd) for start_date and end_date",
        ) from None
    if end < start:
        raise FeedError(HTTPStatus.BAD_REQUEST, f"end_date {end} is before start_date {start}")
    if (end - start).days + 1 > MAX_WINDOW_DAYS:
        raise FeedError(HTTPStatus.BAD_REQUEST, f"The Feed date limit is only {MAX_WINDOW_DAYS} Days")
    return start, end


def feed_response(recorded_dir: Path, start: date, end: date, base_url: str, api_key: str) -> dict[str, Any]:
    """The merged feed for [start, end], with links pointing back at `base_url`."""
    days = recorded_days(recorded_dir)
    near_earth_objects: dict[str, list[dict[str, Any]]] = {}
    for offset in range((end - start).days + 1):
        day = (start + timedelta(days=offset)).isoformat()
        if day not in days:
            raise FeedError(
                HTTPStatus.NOT_FOUND,
                f"no recorded response for {day} in {recorded_dir} (recorded: {', '.join(days) or 'none'})",
            )
        near_earth_objects[day] = json.loads(days[day].read_text())["near_earth_objects"][day]

    span = timedelta(days=(end - start).days + 1)

    def link(first: date, last: date) -> str:
        query = {"start_date": first, "end_date": last, "detailed": "false", "api_key": api_key}
        return f"{base_url}{FEED_PATH}?{urlencode(query)}"

    return {
        "links": {
            "next": link(start + span, end + span),
            "prev": link(start - span, end - span),
            "self": link(start, end),
        },
        "element_count": sum(len(objects) for objects in near_earth_objects.values()),
        "near_earth_objects": near_earth_objects,
    }


class _FeedHandler(QuietJsonHandler):
    server: _ReplayHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path.rstrip("/") != FEED_PATH:
                raise FeedError(HTTPStatus.NOT_FOUND, f"only {FEED_PATH} is replayed, not {url.path}")
            if not query.get("api_key"):
                self.send_json(
                    HTTPStatus.FORBIDDEN,
                    {"error": {"code": "API_KEY_MISSING", "message": "No api_key was supplied."}},
                )
                return
            start, end = _parse_window(query)
            self.server.requested_windows.append((start, end))
            base_url = f"http://{self.headers.get('Host', '127.0.0.1')}"
            body = feed_response(self.server.recorded_dir, start, end, base_url, query["api_key"][0])
        except FeedError as error:
            self.send_json(
                error.status,
                {"code": error.status.value, "http_error": error.status.name, "error_message": str(error)},
            )
            return
        self.send_json(HTTPStatus.OK, body)


class _ReplayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorded_dir: Path) -> None:
        super().__init__(address, _FeedHandler)
        self.recorded_dir = recorded_dir
        self.requested_windows: list[tuple[date, date]] = []


class ReplayServer(LocalServer):
    """The replay API on 127.0.0.1 in a background thread, for the life of a `with` block."""

    thread_name = "neows-replay"

    def __init__(self, recorded_dir: Path | str = RECORDED_DIR, port: int = 0) -> None:
        super().__init__(port)
        self.recorded_dir = Path(recorded_dir)
        if not recorded_days(self.recorded_dir):
            raise FileNotFoundError(f"no recorded NeoWs responses (feed_<YYYY-MM-DD>*.json) in {self.recorded_dir}")

    def make_server(self, address: tuple[str, int]) -> _ReplayHTTPServer:
        return _ReplayHTTPServer(address, self.recorded_dir)

    @property
    def requested_windows(self) -> list[tuple[date, date]]:
        """The (start, end) windows answered so far, in order."""
        return list(self._server.requested_windows) if self._server else []


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve recorded NeoWs feed responses on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--recorded-dir", type=Path, default=RECORDED_DIR)
    args = parser.parse_args()
    with ReplayServer(args.recorded_dir, port=args.port) as server:
        days = list(recorded_days(server.recorded_dir))
        print(f"NeoWs replay at {server.base_url}{FEED_PATH} (days {days[0]} .. {days[-1]}); Ctrl-C stops")
        serve_until_interrupted()


if __name__ == "__main__":
    main()
