"""A local stand-in for the Hacker News items API that serves the generated demo items, so the demo and tests run
offline.

`GET /v0/maxitem.json` answers the highest recorded id (or `max_item` when set, which a test can raise while the
server runs to simulate new items arriving) and `GET /v0/item/<id>.json` the item, or `null` for an id without one,
as the real API does; any other path is a 404. Serve by hand: `uv run python -m extract.hackernews.replay
[--port 8766]`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from extract.local_server import LocalServer, QuietJsonHandler, serve_until_interrupted

RECORDED_ITEMS = Path(__file__).resolve().parent / "recorded" / "items.generated.json"
MAX_ITEM_PATH = "/v0/maxitem.json"
ITEM_PATH = re.compile(r"/v0/item/(\d+)\.json")


def recorded_items(recorded_file: Path | str = RECORDED_ITEMS) -> dict[int, dict[str, Any]]:
    """Item id -> item, from a JSON list of items."""
    items = json.loads(Path(recorded_file).read_text())
    return {item["id"]: item for item in items}


class _ItemsHandler(QuietJsonHandler):
    server: _ReplayHTTPServer
    # keep-alive, answered without Nagle's delay: a load makes one request per item
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.requested_paths.append(path)
        if path == MAX_ITEM_PATH:
            self.send_json(HTTPStatus.OK, self.server.replay.max_item)
        elif match := ITEM_PATH.fullmatch(path):
            self.send_json(HTTPStatus.OK, self.server.replay.items.get(int(match.group(1))))
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"only {MAX_ITEM_PATH} and /v0/item/<id>.json, not {path}"})


class _ReplayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], replay: HackerNewsReplay) -> None:
        super().__init__(address, _ItemsHandler)
        self.replay = replay
        self.lock = threading.Lock()
        self.requested_paths: list[str] = []


class HackerNewsReplay(LocalServer):
    """The replay API on 127.0.0.1 in a background thread, for the life of a `with` block.

    `max_item` is what `/v0/maxitem.json` answers: the highest recorded id unless given; set it while the server
    runs to make ids up to it visible (recorded ones answer their item, others `null`)."""

    thread_name = "hackernews-replay"

    def __init__(self, recorded_file: Path | str = RECORDED_ITEMS, max_item: int | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.recorded_file = Path(recorded_file)
        self.items = recorded_items(self.recorded_file)
        if not self.items:
            raise ValueError(f"no items in {self.recorded_file}")
        self.max_item = max(self.items) if max_item is None else max_item

    def make_server(self, address: tuple[str, int]) -> _ReplayHTTPServer:
        return _ReplayHTTPServer(address, self)

    @property
    def requested_paths(self) -> list[str]:
        """The paths asked for so far, in the order they arrived."""
        if self._server is None:
            return []
        with self._server.lock:
            return list(self._server.requested_paths)

    def requested_item_ids(self) -> list[int]:
        """The item ids asked for so far, sorted."""
        return sorted(int(match.group(1)) for path in self.requested_paths if (match := ITEM_PATH.fullmatch(path)))

    def clear_requests(self) -> None:
        if self._server is not None:
            with self._server.lock:
                self._server.requested_paths.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the demo Hacker News items on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--recorded-file", type=Path, default=RECORDED_ITEMS)
    parser.add_argument("--max-item", type=int, default=None, help="what /v0/maxitem.json answers")
    args = parser.parse_args()
    with HackerNewsReplay(args.recorded_file, max_item=args.max_item, port=args.port) as server:
        first = min(server.items)
        print(f"Hacker News replay at {server.base_url}/v0/ (items {first} .. {server.max_item}); Ctrl-C stops")
        serve_until_interrupted()


if __name__ == "__main__":
    main()
