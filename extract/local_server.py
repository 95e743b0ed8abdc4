"""An HTTP server on 127.0.0.1 in a background thread, for the life of a `with` block: what the demo replays of the
APIs (NeoWs, Hacker News) run on, so the sources and their tests work offline."""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class LocalServer:
    """Subclasses say which server to run (`make_server`); this starts, stops and names it."""

    thread_name = "local-server"

    def __init__(self, port: int = 0) -> None:
        self._port = port  # 0: any free port
        self._server: ThreadingHTTPServer | None = None

    def make_server(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = self.make_server(("127.0.0.1", self._port))
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running: use it in a `with` block")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


def serve_until_interrupted() -> None:
    """Block a `python -m` replay until Ctrl-C."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


class QuietJsonHandler(BaseHTTPRequestHandler):
    """A handler that answers JSON and keeps request lines out of the log (they may carry an api key, and a load
    makes one request per item)."""

    def send_json(self, status: HTTPStatus, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass
