"""Uploads against a real server: a stalled upload is answered by its deadline and frees its
queue place; a client that vanishes mid-upload is not a server error; a proxy's path prefix
(uvicorn --root-path) changes nothing."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from app.core.settings import Settings
from tests.utils.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
SMEAR = (ROOT / "examples" / "monocyte-1.jpeg").read_bytes()


@pytest.fixture(scope="module")
def server(tiny_store):
    with live_server(Settings(store_dir=tiny_store, model_name="tiny")) as server:
        yield server.url


def _metric(base_url: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples on /metrics whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(base_url + "/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _start_upload(
    base_url: str, path: str, headers: dict[str, str], declared: int, sent: bytes
) -> socket.socket:
    """Open a connection and send the head and the first bytes of a body of `declared`."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {declared}",
        *(f"{key}: {value}" for key, value in headers.items()),
        "",
        "",
    ]
    connection.sendall("\r\n".join(head).encode() + sent)
    return connection


def _read_answer(connection) -> str:
    """The whole answer on `connection`: its head, then as much body as Content-Length says
    (head and body may come in separate segments)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length.group(1)):
        chunk = connection.recv(4096)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.05)


def test_a_stalled_upload_is_answered_by_its_deadline_and_frees_its_place(server):
    body = b'{"images": ["' + b"A" * 64
    connection = _start_upload(
        server,
        "/predict",
        {"Content-Type": "application/json", "X-Request-Timeout": "1"},
        declared=100_000,
        sent=body,
    )
    try:
        _wait_for(lambda: _metric(server, "wbc_queue_depth", queue="forward") == 1)
        answer = _read_answer(connection)  # blocks until the server answers
    finally:
        connection.close()
    assert answer.startswith("HTTP/1.1 504")
    assert "deadline_exceeded" in answer
    _wait_for(lambda: _metric(server, "wbc_queue_depth", queue="forward") == 0)
    assert _metric(server, "wbc_requests_shed_total", queue="forward", reason="deadline") >= 1
    ok = httpx.post(server + "/predict", files={"file": ("smear.jpeg", SMEAR)}, timeout=60)
    assert ok.status_code == 200


def test_a_client_gone_mid_upload_is_no_server_error(server):
    errors_before = _metric(server, "wbc_http_requests_total", status="500")
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpeg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    connection = _start_upload(
        server,
        "/predict",
        {"Content-Type": "multipart/form-data; boundary=b"},
        declared=len(head) + len(SMEAR) + 8,
        sent=head + SMEAR[:500],
    )
    _wait_for(lambda: _metric(server, "wbc_queue_depth", queue="forward") == 1)
    connection.close()
    _wait_for(lambda: _metric(server, "wbc_queue_depth", queue="forward") == 0)
    assert _metric(server, "wbc_http_requests_total", status="500") == errors_before
    ok = httpx.post(server + "/predict", files={"file": ("smear.jpeg", SMEAR)}, timeout=60)
    assert ok.status_code == 200


def test_refusals_are_counted_under_the_route_they_were_for(server):
    response = httpx.post(
        server + "/predict",
        files={"file": ("smear.jpeg", SMEAR)},
        headers={"X-Request-Timeout": "-1"},
        timeout=60,
    )
    assert response.status_code == 422
    assert _metric(server, "wbc_http_requests_total", route="/predict", status="422") >= 1


def test_behind_a_path_prefix_every_route_still_works(tiny_store):
    with live_server(
        {"WBC_STORE_DIR": str(tiny_store), "WBC_MODEL_NAME": "tiny"},
        extra_args=("--root-path", "/wbc"),
    ) as server:
        # The proxy strips its prefix before forwarding; uvicorn puts it back into the
        # ASGI path (and root_path), as it does behind a real proxy.
        prefixed = server.url
        predicted = httpx.post(prefixed + "/predict", files={"file": ("s.jpeg", SMEAR)}, timeout=60)
        assert predicted.status_code == 200
        explained = httpx.post(prefixed + "/explain", files={"file": ("s.jpeg", SMEAR)}, timeout=60)
        assert explained.status_code == 200
        refused = httpx.post(prefixed + "/v2/models/tiny/infer", content=b"{bad", timeout=60)
        assert refused.status_code == 400
        assert isinstance(refused.json()["error"], str)  # the protocol's own error shape
