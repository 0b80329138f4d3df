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
    return [{"content": json.dumps({"inputs": [{
                "name": "images", "datatype": "BYTES", "shape": [1],
                "data": [base64.b64encode(image).decode("ascii")]}]}).encode(),
             "headers": {"Content-Type": "application/json"}}
            for image in images]


async def run_load(base_url: str, route: str, bodies: list[dict], concurrency: int,
                   requests: int, warmup: int) -> LoadResult:
    """Send `warmup` unrecorded requests, then `requests` recorded ones, `concurrency` at a
    time; request i posts bodies[i % len(bodies)] (httpx keyword arguments) to `route`."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits,
                                 timeout=REQUEST_TIMEOUT_S) as client:
        await _closed_loop(client, route, bodies, concurrency, warmup)
        started = time.perf_counter()
        outcomes = await _closed_loop(client, route, bodies, concurrency, requests)
        elapsed_s = time.perf_counter() - started
    return _summarise(outcomes, concurrency, elapsed_s)


async def _closed_loop(client: httpx.AsyncClient, route: str, bodies: list[dict],
                       concurrency: int, count: int) -> list[tuple[float, str]]:
    outcomes: list[tuple[float, str]] = []
    # One iterator shared by all workers: each takes the next request as soon as its
    # previous one is answered, which keeps exactly `concurrency` in flight.
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            outcomes.append(await _send(client, route, bodies[index % len(bodies)]))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return outcomes


async def _send(client: httpx.AsyncClient, route: str, body: dict) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        response = await client.post(route, **body)
        status = str(response.status_code)
    except httpx.HTTPError as error:
        status = type(error).__name__
    return (time.perf_counter() - started) * 1000.0, status


def _summarise(outcomes: list[tuple[float, str]], concurrency: int,
               elapsed_s: float) -> LoadResult:
    latencies_ms = np.array([latency for latency, _ in outcomes])
    status_counts = Counter(status for _, status in outcomes)
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return LoadResult(
        requests=len(outcomes), concurrency=concurrency,
        p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99),
        mean_ms=float(latencies_ms.mean()),
        requests_per_second=len(outcomes) / elapsed_s,
        errors=len(outcomes) - status_counts["200"],
        status_counts=dict(status_counts),
    )
