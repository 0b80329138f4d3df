"""The benchmark's load generator: ready-made HTTP/1.1 requests over keep-alive connections,
checked against the real service and against a plain server that closes or chunks."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.load import multipart_bodies, run_load, v2_bodies
from tests.conftest import BUNDLED_MODEL
from tests.utils.images import example_smears


def test_the_service_answers_every_request_the_load_sends(server_url):
    smears = [smear.path.read_bytes() for smear in example_smears()[:3]]
    predict = asyncio.run(
        run_load(
            server_url, "/predict", multipart_bodies(smears), concurrency=2, requests=9, warmup=1
        )
    )
    assert (predict.requests, predict.errors, predict.status_counts) == (9, 0, {"200": 9})
    assert 0 < predict.p50_ms <= predict.p99_ms
    infer = asyncio.run(
        run_load(
            server_url,
            f"/v2/models/{BUNDLED_MODEL}/infer",
            v2_bodies(smears),
            concurrency=3,
            requests=6,
            warmup=0,
        )
    )
    assert infer.status_counts == {"200": 6}
    # A v2 body where /predict wants {"images": [...]}: every answer counts as an error.
    refused = asyncio.run(
        run_load(server_url, "/predict", v2_bodies(smears[:1]), concurrency=1, requests=3, warmup=0)
    )
    assert (refused.errors, refused.status_counts) == (3, {"422": 3})


class _Recorder(BaseHTTPRequestHandler):
    """Answers every POST with 200 and records the body; HTTP/1.0 (closes after each
    answer) unless the server's `chunked` is set (HTTP/1.1, a chunked body)."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, self.headers.get("Content-Type"), body))
        self.server.connections.add(self.client_address)
        self.send_response(200)
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in (b'{"a":', b" 1}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")


def _serve(chunked: bool, requests: int, bodies: list[dict], concurrency: int):
    handler = type(
        "Handler", (_Recorder,), {"protocol_version": "HTTP/1.1" if chunked else "HTTP/1.0"}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.chunked = True, chunked
    server.seen, server.connections = [], set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        result = asyncio.run(
            run_load(f"http://{host}:{port}", "/up?x=1", bodies, concurrency, requests, warmup=0)
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return result, server.seen, server.connections


def test_requests_arrive_as_httpx_would_send_them_and_closed_connections_reopen():
    smear = example_smears()[0].path.read_bytes()
    result, seen, connections = _serve(False, 4, multipart_bodies([smear]), concurrency=1)
    assert result.status_counts == {"200": 4}
    assert len(seen) == 4 and len(connections) == 4  # HTTP/1.0: one connection per request
    path, content_type, body = seen[0]
    assert path == "/up?x=1" and content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    assert body.startswith(b"--" + boundary) and smear in body
    assert body.endswith(b"--" + boundary + b"--\r\n")


def test_chunked_answers_are_read_whole_and_the_connection_kept():
    result, seen, connections = _serve(True, 6, v2_bodies([b"\xff\xd8jpeg"]), concurrency=2)
    assert result.status_counts == {"200": 6}
    assert len(connections) == 2  # one keep-alive connection per worker
    _, content_type, body = seen[0]
    assert content_type == "application/json"
    assert json.loads(body)["inputs"][0]["shape"] == [1]


def test_a_server_that_is_not_there_counts_as_errors_not_a_crash():
    with ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) as server:
        port = server.server_address[1]  # bound, then closed: nothing listens there
    result = asyncio.run(
        run_load(
            f"http://127.0.0.1:{port}",
            "/up",
            v2_bodies([b"x"]),
            concurrency=2,
            requests=4,
            warmup=0,
        )
    )
    assert result.errors == 4 and result.status_counts == {"ConnectionRefusedError": 4}
