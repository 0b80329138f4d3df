"""One command: the real service, the tutorial-style baseline (uvicorn) and the MLServer
baseline (its own venv), all started on loopback ports, then each route loaded at each
concurrency on one server straight after the other (so a ratio compares minutes of the same
machine speed), plus the in-process floor and the forward pass's batch curve against the
matmul peak.

    python -m bench.run [--requests 200] [--concurrency 1,16] [--servers service,mlserver]

Progress goes to stderr, the Markdown table to stdout, everything to --output as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
if __package__ in (None, ""):  # run as `python bench/run.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from app.core.settings import Settings  # noqa: E402
from bench.c_load import WrkMissing, run_wrk, wrk_available  # noqa: E402
from bench.floor import measure_floor  # noqa: E402
from bench.forward import BATCHES, measure_forward  # noqa: E402
from bench.forward import markdown as forward_markdown  # noqa: E402
from bench.images import MissingImages, test_simple_jpegs  # noqa: E402
from bench.load import LoadResult, multipart_bodies, run_load, v2_bodies  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from bench.mlserver import MLServerMissing, mlserver_serving  # noqa: E402
from bench.report import (  # noqa: E402
    BASELINE,
    EXPLAIN,
    MLSERVER,
    PREDICT,
    SERVICE,
    V2_INFER,
    WRK,
    Measurement,
    check_targets,
    markdown,
)
from bench.servers import REPO_ROOT, ServerFailed, server_pid, serving  # noqa: E402
from model_core.runtime import TENSORFLOW  # noqa: E402
from model_core.store.entries import StoreError, entry_dir, read_manifest  # noqa: E402
from model_core.store.manifest import Manifest  # noqa: E402
from training.pipeline.config import DEFAULT_DATA_DIR  # noqa: E402

APPS = {SERVICE: "app.main:app", BASELINE: "bench.baseline_service:app"}
# The routes each server is loaded on; MLServer speaks only the Open Inference Protocol.
ROUTES = {
    SERVICE: (PREDICT, EXPLAIN, V2_INFER),
    BASELINE: (PREDICT, EXPLAIN),
    MLSERVER: (V2_INFER,),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--requests",
        type=_positive_int,
        default=200,
        help="recorded requests per route and concurrency (default 200)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="unrecorded requests sent first at the same concurrency (default 20)",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=[1, 16],
        help="comma-separated requests in flight (default 1,16)",
    )
    parser.add_argument(
        "--servers",
        type=_servers,
        default=list(ROUTES),
        help="comma-separated servers to measure, of service (always run), "
        "baseline, mlserver (default all)",
    )
    parser.add_argument(
        "--forward-batches",
        default=",".join(map(str, BATCHES)),
        help="batch sizes of the in-process forward curve (default %(default)s)",
    )
    parser.add_argument(
        "--forward-seconds",
        type=float,
        default=0.5,
        help="seconds per batch size and backend in that curve (default 0.5)",
    )
    parser.add_argument(
        "--c-client-seconds",
        type=float,
        default=15.0,
        help="seconds of each wrk run (C client, keep-alive) on /v2 infer and /predict at "
        "every concurrency, after 3 s unrecorded; 0 skips wrk (default 15)",
    )
    parser.add_argument("--store-dir", type=Path, default=REPO_ROOT / "model_store")
    parser.add_argument("--model-name", default="wbc-squeezenet")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="blood-cell data set holding images/TEST_SIMPLE/*/*.jpeg",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json"
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _concurrencies(text: str) -> list[int]:
    return sorted({_positive_int(part) for part in text.split(",") if part.strip()})


def _servers(text: str) -> list[str]:
    named = {part.strip() for part in text.split(",") if part.strip()}
    unknown = named - set(ROUTES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown servers {sorted(unknown)}; choose from {list(ROUTES)}"
        )
    return [server for server in ROUTES if server in named | {SERVICE}]


def serve(
    service: str, env: dict[str, str], manifest: Manifest, args: argparse.Namespace
) -> AbstractContextManager[str]:
    """One server, started on entering (its base URL) and stopped on leaving."""
    logs = args.output.parent / "logs"
    if service == MLSERVER:
        entry = entry_dir(args.store_dir.resolve(), manifest.name, manifest.version)
        return mlserver_serving(entry, manifest.name, manifest.version, logs / MLSERVER)
    return serving(APPS[service], env, logs / f"{service}.log")


def measure_servers(
    env: dict[str, str], images: list[bytes], manifest: Manifest, args: argparse.Namespace
) -> list[Measurement]:
    """Start every server (the service first), then load each route at each concurrency on
    every server that serves it, one server straight after the other, so the machine's speed
    (which drifts by tens of percent within minutes on a shared host) is about the same for
    the measurements a ratio compares; stop them all, whatever happens. The servers wait
    idle while another is loaded."""
    requests = {
        PREDICT: (PREDICT, multipart_bodies(images)),
        EXPLAIN: (EXPLAIN, multipart_bodies(images)),
        V2_INFER: (f"/v2/models/{manifest.name}/infer", v2_bodies(images)),
    }
    measurements = []
    with ExitStack() as stack:
        urls = {
            service: stack.enter_context(serve(service, env, manifest, args))
            for service in args.servers
        }
        for route in ROUTES[SERVICE]:  # every route; the service serves them all
            serving_route = [service for service in args.servers if route in ROUTES[service]]
            path, bodies = requests[route]
            for concurrency in args.concurrency:
                for service in serving_route:
                    result = asyncio.run(
                        run_load(
                            urls[service], path, bodies, concurrency, args.requests, args.warmup
                        )
                    )
                    print(
                        f"{service} {route} c={concurrency}: p50 {result.p50_ms:.1f} ms, "
                        f"{result.requests_per_second:.1f} req/s, {result.errors} errors "
                        f"{result.status_counts}",
                        file=sys.stderr,
                    )
                    measurements.append(Measurement(service, route, result))
            if route in (PREDICT, V2_INFER) and args.c_client_seconds > 0:
                for concurrency in args.concurrency:
                    measurements += [
                        _wrk_measurement(
                            service, route, urls[service], path, bodies, concurrency, args
                        )
                        for service in serving_route
                    ]
    return sorted(measurements, key=lambda m: args.servers.index(m.service))


def _wrk_measurement(
    service: str,
    route: str,
    base_url: str,
    path: str,
    bodies: list[dict],
    concurrency: int,
    args: argparse.Namespace,
) -> Measurement:
    """The route under wrk at `concurrency`, posting the first image's request."""
    body = bodies[0]
    if "files" in body:  # multipart: let httpx encode it once, as the Python client does
        request = httpx.Request("POST", base_url + path, files=body["files"])
        content, content_type = request.read(), request.headers["Content-Type"]
    else:
        content, content_type = body["content"], body["headers"]["Content-Type"]
    result: LoadResult = run_wrk(
        base_url,
        path,
        content,
        content_type,
        concurrency,
        args.c_client_seconds,
        warmup_seconds=3.0,
        server_pid=server_pid(base_url),
    )
    print(
        f"{service} {route} (wrk) c={concurrency}: p50 {result.p50_ms:.1f} ms, "
        f"{result.requests_per_second:.1f} req/s, {result.errors} errors",
        file=sys.stderr,
    )
    return Measurement(service, route + WRK, result)


def service_pass_images(backend: str) -> int:
    """The most images the service runs in one forward pass on `backend` (the floor's: the
    same settings on the same machine pick the same backend)."""
    settings = Settings()
    return settings.max_pass_images if backend == TENSORFLOW else settings.onnx_max_pass_images


def _wbc_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith("WBC_")}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A plain SIGTERM would skip the `finally` that stops the servers; SystemExit does not.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    store_dir = args.store_dir.resolve()
    try:
        images = test_simple_jpegs(args.data_dir)
        manifest = read_manifest(entry_dir(store_dir, args.model_name))
    except (MissingImages, StoreError) as error:
        sys.exit(f"bench: {error}")
    if args.c_client_seconds > 0 and not wrk_available():
        sys.exit(f"bench: {WrkMissing.__doc__} `apt-get install wrk`, or --c-client-seconds 0")
    machine = machine_info()
    print("forward pass: batch curve and matmul peak in process", file=sys.stderr)
    forward = measure_forward(
        store_dir,
        args.model_name,
        tuple(int(b) for b in args.forward_batches.split(",")),
        args.forward_seconds,
    )
    print(f"floor: {args.requests} images in process", file=sys.stderr)
    floor = measure_floor(store_dir, args.model_name, images, args.requests)
    # The servers inherit this environment, so any other WBC_* setting applies to the service.
    env = {"WBC_STORE_DIR": str(store_dir), "WBC_MODEL_NAME": args.model_name}
    try:
        measurements = measure_servers(env, images, manifest, args)
    except (MLServerMissing, ServerFailed) as error:
        sys.exit(f"bench: {error}")
    targets = check_targets(
        measurements,
        floor,
        forward,
        service_pass_images(floor.backend),
        machine["cpu_count"] or 2,
    )
    results = {
        "machine": machine,
        "model": {"name": manifest.name, "version": manifest.version, "store_dir": str(store_dir)},
        "settings": {
            "requests": args.requests,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "images": len(images),
            "servers": args.servers,
            "server_env": {**_wbc_environment(), **env},
        },
        "floor": asdict(floor),
        "forward": asdict(forward),
        "measurements": [asdict(m) for m in measurements],
        "targets": [asdict(t) for t in targets],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(measurements, floor, targets, machine))
    print("\n" + forward_markdown(forward))
    print(f"\nresults written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
