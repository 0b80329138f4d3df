"""A static file server on loopback, in a thread, that honours HTTP Range requests, records
what it was asked, and can break a response off part way (to test resuming downloads)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Served:
    """One answered request: its path, the Range header (or None), the status and the
    number of body bytes sent."""

    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class FileServer:
    root: Path
    requests: list[Served] = field(default_factory=list)
    break_after: int | None = None
    """Send only this many body bytes of the next full or partial response (its headers still
    promise the whole), then close the connection; cleared once used."""

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the tests read `requests`
                pass

            def do_GET(self) -> None:
                path = files.root / self.path.lstrip("/")
                asked = self.headers.get("Range")
                if not path.is_file():
                    self._answer(404, b"not found", asked)
                    return
                body = path.read_bytes()
                if asked is None:
                    self._answer(200, body, asked)
                    return
                match = _RANGE.match(asked)
                start = int(match[1]) if match else len(body)
                end = int(match[2]) if match and match[2] else len(body) - 1
                if start >= len(body):
                    self._answer(416, b"", asked, {"Content-Range": f"bytes */{len(body)}"})
                    return
                self._answer(
                    206,
                    body[start : end + 1],
                    asked,
                    {"Content-Range": f"bytes {start}-{end}/{len(body)}"},
                )

            def _answer(
                self,
                status: int,
                body: bytes,
                asked: str | None,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                sent = body
                if files.break_after is not None and status in (200, 206):
                    sent, files.break_after = body[: files.break_after], None
                    self.close_connection = True
                self.wfile.write(sent)
                self.wfile.flush()
                files.requests.append(Served(self.path, asked, status, len(sent)))

        return Handler
