"""Closed-loop HTTP load: exactly `concurrency` requests in flight until `requests` have
been answered, each one's latency and status recorded."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import numpy as np

# Generous, so a slow baseline at high concurrency shows up as latency, not as errors.
REQUEST_TIMEOUT_S = 120.0


@dataclass
class LoadResult:
    """Latency percentiles and throughput of one route at one concurrency."""

    requests: int
    concurrency: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_second: float
    errors: int
    """Answers other than 200, plus requests that got no answer."""
    status_counts: dict[str, int]
    """How often each HTTP status (or transport error name) came back."""


def multipart_bodies(images: list[bytes]) -> list[dict]:
    """One upload per image, as multipart field `file` (/predict, /explain)."""
    return [{"files": {"file": ("cell.jpeg", image, "image/jpeg")}} for image in images]


def v2_bodies(images: list[bytes]) -> list[dict]:
    """One Open Inference Protocol request per image: input `images`, BYTES [1], the file
    base64 in JSON; the same bytes go to every server that speaks it."""
    return [
        {
            "content": json.dumps(
                {
                    "inputs": [
                        {
                            "name": "images",
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": [base64.b64encode(image).decode("ascii")],
                        }
                    ]
                }
            ).encode(),
            "headers": {"Content-Type": "application/json"},
        }
        for image in images
    ]


async def run_load(
    base_url: str, route: str, bodies: list[dict], concurrency: int, requests: int, warmup: int
) -> LoadResult:
    """Send `warmup` unrecorded requests, then `requests` recorded ones, `concurrency` at a
    time; request i posts bodies[i % len(bodies)] (httpx keyword arguments) to `route`.

    httpx only encodes each body once, up front: the requests themselves go out as
    ready-made bytes over one keep-alive connection per worker. httpx's own per-request
    work (~1.7 ms of CPU on the development machine) would otherwise be timed as the
    server's latency and, on 2 cores, take CPU from the server under test."""
    url = httpx.URL(base_url)
    encoded = [_encode(url, route, body) for body in bodies]
    # Opened on first use: a phase of fewer requests than `concurrency` opens fewer.
    connections = [_Connection(url.host, url.port or 80) for _ in range(concurrency)]
    try:
        await _closed_loop(connections, encoded, warmup)
        started = time.perf_counter()
        outcomes = await _closed_loop(connections, encoded, requests)
        elapsed_s = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.close()
    return _summarise(outcomes, concurrency, elapsed_s)


def _encode(url: httpx.URL, route: str, body: dict) -> bytes:
    """One HTTP/1.1 POST of `body` (httpx keyword arguments), headers and content, as bytes."""
    request = httpx.Request("POST", url.join(route), **body)
    content = request.read()
    headers = [(b"Host", request.url.netloc)]
    headers += [
        (name, value)
        for name, value in request.headers.raw
        if name.lower() not in (b"host", b"transfer-encoding", b"content-length")
    ]
    headers.append((b"Content-Length", str(len(content)).encode()))
    target = request.url.raw_path
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"POST " + target + b" HTTP/1.1\r\n" + head + b"\r\n" + content


class _Connection:
    """One keep-alive connection, opened on first use and again after an error or a
    `Connection: close`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, request: bytes) -> str:
        """Send one ready-made request and read its whole answer: the status code."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request)
        await writer.drain()
        status, keep_alive = await _read_response(reader)
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """Status code and whether the connection stays open, after reading the body (by
    Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status = status_line.split(" ", 2)[:2]
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    keep_alive = headers.get("connection") != "close" and version == "HTTP/1.1"
    return status, keep_alive


async def _closed_loop(
    connections: list[_Connection], requests: list[bytes], count: int
) -> list[tuple[float, str]]:
    outcomes: list[tuple[float, str]] = []
    # One iterator shared by all workers: each takes the next request as soon as its
    # previous one is answered, which keeps exactly `concurrency` in flight.
    indices = iter(range(count))

    async def worker(connection: _Connection) -> None:
        for index in indices:
            outcomes.append(await _send(connection, requests[index % len(requests)]))

    await asyncio.gather(*(worker(connection) for connection in connections[:count]))
    return outcomes


async def _send(connection: _Connection, request: bytes) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(connection.post(request), REQUEST_TIMEOUT_S)
    except (
        OSError,
        TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ValueError,
    ) as error:
        connection.close()
        status = type(error).__name__
    return (time.perf_counter() - started) * 1000.0, status


def _summarise(outcomes: list[tuple[float, str]], concurrency: int, elapsed_s: float) -> LoadResult:
    latencies_ms = np.array([latency for latency, _ in outcomes])
    status_counts = Counter(status for _, status in outcomes)
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return LoadResult(
        requests=len(outcomes),
        concurrency=concurrency,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(latencies_ms.mean()),
        requests_per_second=len(outcomes) / elapsed_s,
        errors=len(outcomes) - status_counts["200"],
        status_counts=dict(status_counts),
    )
