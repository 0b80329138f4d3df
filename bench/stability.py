"""Two checks of a long-running server (issue 12): no cold path after ready, and no memory
growth under load.

    python -m bench.stability [--steady 20] [--soak 10000] [--concurrency 32]

1. Cold path: a fresh server, once /health/ready answers, gets one /explain of each method
   (the first request after ready), then `--steady` more of each; the ratio of the first to
   the steady median says whether a request still traced a function after ready.
2. Soak: `--soak` requests at `--concurrency`, 80% /predict and 20% /explain, uploading
   the example smears; the server's resident memory (its own process_resident_memory_bytes
   from /metrics) after a warm-up and at the end, and every non-200 answer.

Prints one JSON object; writes it to --output too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import multipart_bodies, run_load  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from bench.servers import REPO_ROOT, serving  # noqa: E402

EXAMPLES = REPO_ROOT / "examples"
MIB = 1024 * 1024
WARMUP_REQUESTS = 500


def example_images() -> list[bytes]:
    return [path.read_bytes() for path in sorted(EXAMPLES.glob("*.jpeg"))]


def first_and_steady(base_url: str, image: bytes, steady: int) -> dict[str, dict[str, float]]:
    """Per method: the first /explain after ready and the median of `steady` later ones.
    The methods come from the server's /models (this process never imports TensorFlow: a
    library mapped by two processes is not paged out of either, app/core/memory.py)."""
    files = {"file": ("cell.jpeg", image, "image/jpeg")}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        methods = client.get("/models").raise_for_status().json()["models"][0]["methods"]
        timings: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(steady + 1):
            for name in timings:
                started = time.perf_counter()
                response = client.post("/explain", params={"method": name}, files=files)
                response.raise_for_status()
                timings[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {
            "first_ms": round(values[0], 1),
            "steady_median_ms": round(statistics.median(values[1:]), 1),
            "ratio": round(values[0] / statistics.median(values[1:]), 2),
        }
        for name, values in timings.items()
    }


def resident_bytes(base_url: str) -> int:
    text = httpx.get(base_url + "/metrics", timeout=30).text
    line = next(
        line for line in text.splitlines() if line.startswith("process_resident_memory_bytes ")
    )
    return int(float(line.split()[1]))


async def mixed_load(base_url: str, images: list[bytes], requests: int, concurrency: int) -> dict:
    """`requests` in all: 80% /predict and 20% /explain, both routes in flight together."""
    bodies = multipart_bodies(images)
    explain_share = requests // 5
    predict_concurrency = max(1, round(concurrency * 0.8))
    predict, explain = await asyncio.gather(
        run_load(base_url, "/predict", bodies, predict_concurrency, requests - explain_share, 0),
        run_load(
            base_url,
            "/explain?method=gradcam&output=overlay",
            bodies,
            concurrency - predict_concurrency,
            explain_share,
            0,
        ),
    )
    return {
        "predict": predict.__dict__,
        "explain": explain.__dict__,
        "errors": predict.errors + explain.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steady", type=int, default=20)
    parser.add_argument("--soak", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--output", type=Path, default=Path("bench/results/stability.json"))
    args = parser.parse_args(argv)
    images = example_images()
    log = Path("bench/results/stability-server.log")
    result: dict = {"machine": machine_info()}
    with serving("app.main:app", {}, log) as base_url:
        result["cold_path"] = first_and_steady(base_url, images[0], args.steady)
    with serving("app.main:app", {}, log) as base_url:
        result["rss_ready_mib"] = round(resident_bytes(base_url) / MIB, 1)
        asyncio.run(mixed_load(base_url, images, WARMUP_REQUESTS, args.concurrency))
        warm = resident_bytes(base_url)
        soak = asyncio.run(mixed_load(base_url, images, args.soak, args.concurrency))
        end = resident_bytes(base_url)
    result["soak"] = {
        "requests": args.soak,
        "concurrency": args.concurrency,
        "errors": soak["errors"],
        "rss_after_warmup_mib": round(warm / MIB, 1),
        "rss_end_mib": round(end / MIB, 1),
        "rss_growth_percent": round(100 * (end - warm) / warm, 2),
        "predict_p50_ms": round(soak["predict"]["p50_ms"], 1),
        "explain_p50_ms": round(soak["explain"]["p50_ms"], 1),
        "status_counts": {
            "predict": soak["predict"]["status_counts"],
            "explain": soak["explain"]["status_counts"],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
