"""The page's own latency (issue 10): how long a person waits, in a real browser, from
choosing a smear to seeing the label and all four explanations, against the two API calls
the page makes.

    python -m bench.page [--duration 60] [--warmup 3] [--output bench/results/page.json]

One real server (uvicorn, loopback) and headless Chromium (Debian's, driven by Playwright;
`WBC_CHROMIUM` names another binary). Each round, on the bundled example smears in turn:

- api: POST /predict, then POST /explain?method=all, one after the other (httpx); their sum
  is the target's yardstick;
- page: the smear is set on the page's file input. The clock, the page's own
  `performance.now()`, starts at the input's `change` event and stops at the first frame
  after the page shows the label and the four pictures, decoded (its `data-state` turns
  `done`): what a person waits for, the browser's own work included. `wall_ms` adds
  Playwright's round trips (setting the file, noticing the end), for reference.

Target: page p50 <= 1.5 x (predict + explain?method=all) p50. Rounds alternate between the
two so both see the same machine. Prints one JSON object; writes it to --output too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_info  # noqa: E402
from bench.servers import REPO_ROOT, serving  # noqa: E402

EXAMPLES = REPO_ROOT / "examples"
TARGET_RATIO = 1.5
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Installed once in the page: stamps the file input's change event and the first frame after
# the results are shown with their pictures decoded.
STOPWATCH = """() => {
    window.benchClock = {start: null, end: null};
    document.querySelector('input[type=file]').addEventListener('change', () => {
        window.benchClock = {start: performance.now(), end: null};
    }, {capture: true});
    new MutationObserver(async () => {
        const clock = window.benchClock;
        if (document.body.dataset.state !== 'done' || clock.start === null || clock.end) return;
        const pictures = [...document.querySelectorAll('#methods img')];
        await Promise.all(pictures.map((picture) => picture.decode()));
        requestAnimationFrame(() => { clock.end = performance.now(); });
    }).observe(document.body, {attributes: true, attributeFilter: ['data-state']});
}"""
TIMEOUT_MS = 300_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of recorded rounds (default 60; at least 3 rounds)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="unrecorded rounds first")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/page.json")
    return parser.parse_args(argv)


def chromium() -> str:
    found = (
        os.environ.get("WBC_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-headless-shell")
    )
    if not found:
        sys.exit("bench.page: needs Chromium (`apt-get install chromium`, or set WBC_CHROMIUM)")
    return found


def api_round(client: httpx.Client, name: str, image: bytes) -> dict[str, float]:
    """/predict then /explain?method=all for one image, each timed, one after the other."""
    timings = {}
    for route, params in (("/predict", {}), ("/explain", {"method": "all"})):
        started = time.perf_counter()
        response = client.post(route, params=params, files={"file": (name, image, "image/jpeg")})
        response.raise_for_status()
        timings[route] = (time.perf_counter() - started) * 1000
    return {
        "predict_ms": timings["/predict"],
        "explain_all_ms": timings["/explain"],
        "api_ms": timings["/predict"] + timings["/explain"],
    }


def page_round(page, path: Path) -> dict[str, float]:
    """Milliseconds from choosing the file to the page showing every result: in the page's
    own clock, and from Python (Playwright's round trips included)."""
    page.evaluate("document.body.dataset.state = 'bench'")
    started = time.perf_counter()
    page.set_input_files("input[type=file]", str(path))
    page.wait_for_function("window.benchClock.end !== null", polling=5, timeout=TIMEOUT_MS)
    wall_ms = (time.perf_counter() - started) * 1000
    if page.locator("#methods img").count() != 4:
        raise RuntimeError(f"the page showed no four pictures for {path.name}")
    page_ms = page.evaluate("window.benchClock.end - window.benchClock.start")
    return {"page_ms": page_ms, "wall_ms": wall_ms}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "n": len(ordered),
    }


def measure(base_url: str, duration: float, warmup: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    paths = sorted(EXAMPLES.glob("*.jpeg"))
    samples: dict[str, list[float]] = {
        "predict_ms": [],
        "explain_all_ms": [],
        "api_ms": [],
        "page_ms": [],
        "wall_ms": [],
    }
    with sync_playwright() as playwright, httpx.Client(base_url=base_url, timeout=300) as client:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base_url + "/")
        page.wait_for_function("!document.getElementById('model').textContent.includes('loading')")
        page.evaluate(STOPWATCH)
        deadline, round_index = None, 0
        while deadline is None or time.monotonic() < deadline or len(samples["page_ms"]) < 3:
            path = paths[round_index % len(paths)]
            api = api_round(client, path.name, path.read_bytes())
            shown = page_round(page, path)
            round_index += 1
            if round_index == warmup:
                deadline = time.monotonic() + duration
            if round_index <= warmup:
                continue
            for key, value in (api | shown).items():
                samples[key].append(value)
        browser.close()
    if errors:
        raise RuntimeError(f"the page raised errors: {errors}")
    return samples


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log_path = args.output.parent / "logs" / "page-server.log"
    with serving("app.main:app", {}, log_path) as base_url:
        samples = measure(base_url, args.duration, max(1, args.warmup))
    stats = {key: summary(values) for key, values in samples.items()}
    ratio = stats["page_ms"]["p50"] / stats["api_ms"]["p50"]
    results = {
        "machine": machine_info(),
        "settings": {
            "duration_s": args.duration,
            "warmup_rounds": args.warmup,
            "images": "examples/*.jpeg",
        },
        "latency_ms": stats,
        "target": {
            "name": "page p50 <= 1.5 x (predict + explain?method=all) p50",
            "ratio": round(ratio, 2),
            "bound": TARGET_RATIO,
            "met": ratio <= TARGET_RATIO,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
