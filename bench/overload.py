"""Overload (issue 14): a flood of explanations with a steady stream of predictions beside
it, against the service as configured and against the same service with its queues
unbounded (the behaviour before issue 14), plus load below capacity on both.

    python -m bench.overload [--flood-client wrk] [--flood-seconds 60] [--flood 3000]
                             [--flood-concurrency 300] [--predict-concurrency 8]
                             [--requests 200] [--concurrency 1,16,32] [--no-reference]

1. Below capacity: `--requests` closed-loop requests to /predict and to
   /explain?method=gradcam at each `--concurrency` (all <= 32): req/s and refusals (503).
2. Flood: /explain?method=gradcam requests, `--flood-concurrency` at a time, sent as
   ApacheBench does (each connection sends its next request as soon as it has an answer,
   503 or not): by wrk (a C client, the default where installed) for `--flood-seconds`, or
   with `--flood-client python` `--flood` requests from a Python process of its own (whose
   client CPU then takes a share of the 2 cores the server runs on). Meanwhile
   `--predict-concurrency` workers keep /predict busy, and a probe /explain on a new
   connection goes out every 0.5 s, alternating a real smear and a 5 MiB body (a refused
   request's body is never read beyond 1 MiB).
Everything that got no HTTP answer (connection refused, reset or closed) counts as dropped.

Prints the Markdown tables (and the issue's targets) to stdout, progress to stderr, and
writes everything as JSON to --output. The servers' logs go beside it in logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.c_load import wrk_available, wrk_flood  # noqa: E402
from bench.load import multipart_bodies, run_load  # noqa: E402
from bench.servers import REPO_ROOT, serving  # noqa: E402

PREDICT, EXPLAIN = "/predict", "/explain?method=gradcam"
BOUNDED, UNBOUNDED = "bounded", "unbounded"
# The service as before issue 14: queues that never refuse, explanation passes of 32.
UNBOUNDED_ENV = {
    "WBC_FORWARD_QUEUE_LIMIT": "1000000",
    "WBC_EXPLAIN_QUEUE_LIMIT": "1000000",
    "WBC_MAX_EXPLAIN_PASS_IMAGES": "32",
}
PROBE_INTERVAL_S = 0.5
BIG_PROBE_BYTES = 5 * 1024 * 1024
REQUEST_TIMEOUT_S = 120.0
KEEPALIVE_S = 2.0
# Targets of issue 14.
PREDICT_P99_MS, PROBE_MS, THROUGHPUT_RATIO = 1000.0, 200.0, 0.9


@dataclass
class Outcome:
    latency_ms: float
    status: str  # the HTTP status, or the transport error's name when no answer came
    retry_after: str | None = None
    response_bytes: int = 0  # status line excluded: header lines and body


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--flood-client",
        choices=("wrk", "python"),
        default="wrk" if wrk_available() else "python",
        help="what sends the flood: wrk (the default where installed) or a Python process",
    )
    parser.add_argument(
        "--flood-seconds", type=float, default=60.0, help="how long wrk floods (60)"
    )
    parser.add_argument(
        "--flood", type=int, default=3000, help="requests of the Python flood (3000)"
    )
    parser.add_argument("--flood-concurrency", type=int, default=300)
    parser.add_argument("--predict-concurrency", type=int, default=8)
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="requests per route and concurrency below capacity (200)",
    )
    parser.add_argument(
        "--concurrency",
        default="1,16,32",
        help="comma-separated concurrencies below capacity (1,16,32)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the unbounded server (the behaviour before issue 14)",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/overload.json")
    return parser.parse_args(argv)


def example_images() -> list[bytes]:
    return [path.read_bytes() for path in sorted((REPO_ROOT / "examples").glob("*.jpeg"))]


async def post(client: httpx.AsyncClient, path: str, body: dict) -> Outcome:
    started = time.perf_counter()
    try:
        response = await client.post(path, **body)
    except httpx.HTTPError as error:
        return Outcome((time.perf_counter() - started) * 1000, type(error).__name__)
    size = len(response.content) + sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return Outcome(
        (time.perf_counter() - started) * 1000,
        str(response.status_code),
        response.headers.get("retry-after"),
        size,
    )


def flood_process(
    base_url: str, images: list[bytes], requests: int, concurrency: int, results: Connection
) -> None:
    """In a process of its own, so the flood's client work does not slow the measuring
    client: sends "started", then the outcomes (as dicts) once all `requests` are answered."""
    results.send("started")
    outcomes = asyncio.run(closed_loop_flood(base_url, images, requests, concurrency))
    results.send([asdict(outcome) for outcome in outcomes])
    results.close()


async def closed_loop_flood(
    base_url: str, images: list[bytes], requests: int, concurrency: int
) -> list[Outcome]:
    bodies = multipart_bodies(images)
    indices = iter(range(requests))
    outcomes: list[Outcome] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for index in indices:
            outcomes.append(await post(client, EXPLAIN, bodies[index % len(bodies)]))

    async with client_for(base_url, concurrency) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return outcomes


def client_for(base_url: str, connections: int) -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them:
    # reusing one as the server closes it would count as a dropped connection.
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=KEEPALIVE_S,
    )
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S)


async def flood(base_url: str, images: list[bytes], args: argparse.Namespace) -> dict:
    """The flood (wrk, or a Python process of its own); /predict workers and probes here
    while it lasts."""
    bodies = multipart_bodies(images)
    big_body = {"files": {"file": ("big.jpeg", images[0] + bytes(BIG_PROBE_BYTES), "image/jpeg")}}
    predicted: list[Outcome] = []
    probes: list[tuple[str, Outcome]] = []
    done = asyncio.Event()

    async def predictor(client: httpx.AsyncClient, offset: int) -> None:
        index = offset
        while not done.is_set():
            predicted.append(await post(client, PREDICT, bodies[index % len(bodies)]))
            index += 1

    async def prober() -> None:
        kinds = [("smear", bodies[0]), ("5 MiB body", big_body)]
        while not done.is_set():
            await asyncio.sleep(PROBE_INTERVAL_S)
            if done.is_set():
                break
            kind, body = kinds[len(probes) % 2]
            async with client_for(base_url, 1) as fresh:  # a new client's first request
                probes.append((kind, await post(fresh, EXPLAIN, body)))

    async def beside(flooding: Callable[[], Awaitable[tuple[float, dict]]]) -> tuple[float, dict]:
        """`flooding()` (its seconds and summary) with the predictors and the prober."""
        async with client_for(base_url, args.predict_concurrency) as predict_client:
            side = [
                asyncio.create_task(predictor(predict_client, offset))
                for offset in range(args.predict_concurrency)
            ]
            side.append(asyncio.create_task(prober()))
            try:
                return await flooding()
            finally:
                done.set()
                await asyncio.gather(*side)

    if args.flood_client == "wrk":
        request = httpx.Request("POST", base_url + EXPLAIN, files=bodies[0]["files"])

        def by_wrk() -> tuple[float, dict]:
            answered = wrk_flood(
                base_url,
                EXPLAIN,
                request.read(),
                request.headers["Content-Type"],
                args.flood_concurrency,
                args.flood_seconds,
            )
            return answered.pop("seconds"), answered

        seconds, flooded = await beside(lambda: asyncio.to_thread(by_wrk))
    else:
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=flood_process,
            daemon=True,
            args=(base_url, images, args.flood, args.flood_concurrency, sender),
        )
        process.start()

        async def by_python() -> tuple[float, dict]:
            started = time.perf_counter()
            outcomes = [Outcome(**row) for row in await asyncio.to_thread(receiver.recv)]
            return round(time.perf_counter() - started, 2), summary(outcomes)

        try:
            assert await asyncio.to_thread(receiver.recv) == "started"
            seconds, flooded = await beside(by_python)
        finally:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return {
        "seconds": seconds,
        "client": args.flood_client,
        "flood": flooded,
        "predict": summary(predicted),
        "probes": [{"kind": kind, **asdict(outcome)} for kind, outcome in probes],
    }


def summary(outcomes: list[Outcome]) -> dict:
    latencies = np.array([o.latency_ms for o in outcomes] or [0.0])
    p50, p99 = np.percentile(latencies, [50, 99])
    statuses = Counter(o.status for o in outcomes)
    refused = [o for o in outcomes if o.status == "503"]
    return {
        "requests": len(outcomes),
        "statuses": dict(statuses),
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "dropped": sum(not o.status.isdigit() for o in outcomes),
        "refused_with_retry_after": sum(o.retry_after is not None for o in refused),
        "refusal_bytes": max((o.response_bytes for o in refused), default=0),
    }


def below_capacity(base_url: str, images: list[bytes], args: argparse.Namespace) -> list[dict]:
    rows = []
    for route in (PREDICT, EXPLAIN):
        for concurrency in args.concurrencies:
            result = asyncio.run(
                run_load(
                    base_url,
                    route,
                    multipart_bodies(images),
                    concurrency,
                    args.requests,
                    min(20, args.requests),
                )
            )
            rows.append(
                {
                    "route": route,
                    "concurrency": concurrency,
                    "requests_per_second": round(result.requests_per_second, 1),
                    "p50_ms": round(result.p50_ms, 1),
                    "p99_ms": round(result.p99_ms, 1),
                    "statuses": result.status_counts,
                }
            )
            print(
                f"  {route} c={concurrency}: {result.requests_per_second:.1f} req/s "
                f"{result.status_counts}",
                file=sys.stderr,
            )
    return rows


def measure(name: str, env: dict[str, str], images: list[bytes], args: argparse.Namespace) -> dict:
    print(f"{name}: starting the service", file=sys.stderr)
    with serving(
        "app.main:app", env, args.output.parent / "logs" / f"overload-{name}.log"
    ) as base_url:
        print(f"{name}: below capacity", file=sys.stderr)
        below = below_capacity(base_url, images, args)
        size = f"{args.flood_seconds:g} s" if args.flood_client == "wrk" else str(args.flood)
        print(
            f"{name}: flood of {size} by {args.flood_client} at c={args.flood_concurrency}",
            file=sys.stderr,
        )
        flooded = asyncio.run(flood(base_url, images, args))
    return {"below_capacity": below, "flood": flooded}


def targets(results: dict) -> list[tuple[str, str, str, bool]]:
    """(measure, value, target, met) of the bounded service, against the reference if run."""
    bounded = results[BOUNDED]
    flood_run = bounded["flood"]
    probes = flood_run["probes"]
    refused = [p for p in probes if p["status"] == "503" and p["retry_after"]]
    # A probe that arrives just as a place frees is admitted (200): correct, but not a refusal.
    slowest_refusal = max((p["latency_ms"] for p in refused), default=float("nan"))
    dropped = (
        flood_run["flood"]["dropped"]
        + flood_run["predict"]["dropped"]
        + sum(not p["status"].isdigit() for p in flood_run["probes"])
    )
    refusals = sum(row["statuses"].get("503", 0) for row in bounded["below_capacity"])
    rows = [
        (
            "/predict p99 during the flood",
            f"{flood_run['predict']['p99_ms']:.0f} ms",
            f"<= {PREDICT_P99_MS:.0f} ms",
            flood_run["predict"]["p99_ms"] <= PREDICT_P99_MS,
        ),
        (
            "probes answered 503 with Retry-After (the rest found a free place)",
            f"{len(refused)} of {len(probes)}",
            "all",
            bool(probes) and len(refused) == len(probes),
        ),
        (
            "slowest refused probe",
            f"{slowest_refusal:.0f} ms",
            f"<= {PROBE_MS:.0f} ms",
            slowest_refusal <= PROBE_MS,
        ),
        ("connections dropped", str(dropped), "0", dropped == 0),
        ("refusals below capacity", str(refusals), "0", refusals == 0),
    ]
    if UNBOUNDED in results:
        reference = {
            (r["route"], r["concurrency"]): r["requests_per_second"]
            for r in results[UNBOUNDED]["below_capacity"]
        }
        for row in bounded["below_capacity"]:
            ratio = row["requests_per_second"] / reference[(row["route"], row["concurrency"])]
            rows.append(
                (
                    f"{row['route']} req/s at c={row['concurrency']}, bounded / unbounded",
                    f"{ratio:.2f}",
                    f">= {THROUGHPUT_RATIO}",
                    ratio >= THROUGHPUT_RATIO,
                )
            )
    return rows


def markdown(results: dict) -> str:
    lines = [
        "| server | route | concurrency | req/s | p50 ms | p99 ms | statuses |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for server in (BOUNDED, UNBOUNDED):
        for row in results.get(server, {}).get("below_capacity", []):
            lines.append(
                f"| {server} | `{row['route']}` | {row['concurrency']} | "
                f"{row['requests_per_second']} | {row['p50_ms']} | {row['p99_ms']} | "
                f"{row['statuses']} |"
            )
    lines += [
        "",
        "| server | during the flood | requests | p50 ms | p99 ms | statuses |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for server in (BOUNDED, UNBOUNDED):
        if server not in results:
            continue
        run = results[server]["flood"]
        for part in ("flood", "predict"):
            row = run[part]
            client = f", {run.get('client', 'python')}" if part == "flood" else ""
            lines.append(
                f"| {server} | {part} ({run['seconds']} s{client}) | {row['requests']} | "
                f"{row['p50_ms']} | {row['p99_ms']} | {row['statuses']} |"
            )
        for kind in ("smear", "5 MiB body"):
            probes = [p for p in run["probes"] if p["kind"] == kind]
            if probes:
                lines.append(
                    f"| {server} | probe, {kind} | {len(probes)} | "
                    f"{np.median([p['latency_ms'] for p in probes]):.1f} | "
                    f"{max(p['latency_ms'] for p in probes):.1f} (max) | "
                    f"{dict(Counter(p['status'] for p in probes))} |"
                )
    lines += [
        "",
        "| measure (bounded service) | value | target | met |",
        "| --- | ---: | --- | --- |",
    ]
    lines += [
        f"| {name} | {value} | {target} | {'yes' if met else '**no**'} |"
        for name, value, target, met in targets(results)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.concurrencies = sorted({int(part) for part in args.concurrency.split(",") if part})
    from bench.machine import machine_info  # TensorFlow: not in the flood's process

    images = example_images()
    results: dict = {
        "machine": machine_info(),
        "settings": {key: value for key, value in vars(args).items() if key != "output"},
    }
    results[BOUNDED] = measure(BOUNDED, {}, images, args)
    if not args.no_reference:
        results[UNBOUNDED] = measure(UNBOUNDED, UNBOUNDED_ENV, images, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results["targets"] = [
        dict(zip(("measure", "value", "target", "met"), row, strict=True))
        for row in targets(results)
    ]
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nresults written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
