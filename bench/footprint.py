"""What one server process costs, for sizing Kubernetes requests and limits: its resident
memory once ready and after /predict and /explain load, its peak, and the CPU time each
request takes (user + system seconds of the server process, read from /proc).

    python -m bench.footprint [--predict 200] [--explain 100] [--concurrency 16]

The server is the real `uvicorn app.main:app` on a free loopback port, serving the bundled
model; the requests upload the example smears in examples/. CPU seconds per request do not
depend on what else the machine runs (the wall time does), so they size CPU requests even
on a busy machine. Linux only (/proc). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import multipart_bodies, run_load  # noqa: E402
from bench.servers import HOST, READY_ROUTE, REPO_ROOT, free_port  # noqa: E402

EXAMPLES = REPO_ROOT / "examples"
MIB = 1024 * 1024


def memory_bytes(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])  # fields 14 and 15 of stat
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "WBC_STORE_DIR": str(REPO_ROOT / "model_store")},
        )


def wait_ready(process: subprocess.Popen, base_url: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(base_url + READY_ROUTE, timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{base_url}{READY_ROUTE} did not answer 200 in {timeout_s:.0f} s")


def measure_route(
    pid: int, base_url: str, route: str, images: list[bytes], requests: int, concurrency: int
) -> dict[str, float]:
    cpu_before = cpu_seconds(pid)
    result = asyncio.run(
        run_load(base_url, route, multipart_bodies(images), concurrency, requests, warmup=0)
    )
    cpu_used = cpu_seconds(pid) - cpu_before
    return {
        "requests": result.requests,
        "errors": result.errors,
        "cpu_ms_per_request": round(1000 * cpu_used / result.requests, 1),
        "requests_per_second_here": round(result.requests_per_second, 1),
        "rss_mib_after": round(memory_bytes(pid)["VmRSS"] / MIB),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.footprint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--predict", type=int, default=200, help="/predict requests")
    parser.add_argument("--explain", type=int, default=100, help="/explain requests")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument(
        "--images",
        type=Path,
        default=EXAMPLES,
        help="folder whose *.jpeg files the requests upload, in turn",
    )
    parser.add_argument("--log", type=Path, default=Path("bench/results/logs/footprint.log"))
    args = parser.parse_args(argv)
    images = [path.read_bytes() for path in sorted(args.images.glob("*.jpeg"))]
    args.log.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    started = time.monotonic()
    process = start_server(port, args.log)
    try:
        wait_ready(process, base_url)
        report = {
            "ready_after_s": round(time.monotonic() - started, 1),
            "cpu_s_to_ready": round(cpu_seconds(process.pid), 1),
            "rss_mib_ready": round(memory_bytes(process.pid)["VmRSS"] / MIB),
        }
        for route, count in (("/predict", args.predict), ("/explain?method=gradcam", args.explain)):
            report[route] = measure_route(
                process.pid, base_url, route, images, count, args.concurrency
            )
        report["rss_mib_peak"] = round(memory_bytes(process.pid)["VmHWM"] / MIB)
        report["concurrency"] = args.concurrency
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still answering long requests: stop it anyway
            process.kill()
            process.wait()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
