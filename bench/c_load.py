"""Throughput as a C client measures it: wrk (Debian's `wrk`), HTTP/1.1 keep-alive, one client
thread, `concurrency` connections each posting the same body back to back for a fixed time.

The Python client (`bench.load`) costs the client's own CPU on the same 2 cores as the server
under test; wrk costs a few percent of one core, so the server's throughput is what is
measured. ApacheBench (`ab -k`) was tried first: it speaks HTTP/1.0 and keeps a connection
only when the answer says `Connection: keep-alive`, which uvicorn (the service and MLServer
alike) never sends, so every ab request opened a new connection.

The server's CPU per request comes from its process group's CPU time (/proc) over the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.load import LoadResult

WRK = "wrk"
# Every script posts the file WRK_BODY as WRK_TYPE.
_POST = """
local f = io.open(os.getenv("WRK_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("WRK_TYPE")
"""
# Posts WRK_BODY (a file) as WRK_TYPE and prints one JSON line of the summary and latency
# percentiles (microseconds) at the end.
_SCRIPT = (
    _POST
    + """done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
    .. '"mean_us": %f}\\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""
)


# A flood: posts like _SCRIPT, counts the answers by status in each thread, and prints them
# with the summary (wrk's `done` runs in a Lua state of its own: it reads the threads').
_FLOOD_SCRIPT = (
    _POST
    + """local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; refused = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 503 then refused = refused + 1
  else other = other + 1 end
end
done = function(summary, latency, requests)
  local answered = {0, 0, 0}
  for _, thread in ipairs(threads) do
    answered[1] = answered[1] + thread:get("ok")
    answered[2] = answered[2] + thread:get("refused")
    answered[3] = answered[3] + thread:get("other")
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"timeout": %d, "200": %d, "503": %d, "other": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, answered[1], answered[2], answered[3],
    latency:percentile(50), latency:percentile(99)))
end
"""
)


class WrkMissing(Exception):
    """wrk is not installed."""


@dataclass
class CLoadResult(LoadResult):
    """A wrk run, and the server's CPU milliseconds per answered request over it."""

    server_cpu_ms_per_request: float | None = None


def wrk_available() -> bool:
    return shutil.which(WRK) is not None


def run_wrk(
    base_url: str,
    path: str,
    body: bytes,
    content_type: str,
    concurrency: int,
    seconds: float,
    warmup_seconds: float,
    server_pid: int | None = None,
) -> CLoadResult:
    """`warmup_seconds` of unrecorded load, then `seconds` recorded, `concurrency`
    connections posting `body` to `path`; `server_pid`: the server's process group leader,
    whose group's CPU time gives the CPU per request."""
    if not wrk_available():
        raise WrkMissing(
            "wrk is not installed: `apt-get install wrk` (Debian), or run without --c-client"
        )
    with tempfile.TemporaryDirectory() as scratch:
        script, body_file = Path(scratch) / "post.lua", Path(scratch) / "body"
        script.write_text(_SCRIPT)
        body_file.write_bytes(body)
        env = {**os.environ, "WRK_BODY": str(body_file), "WRK_TYPE": content_type}

        def wrk(duration: float) -> dict:
            command = [WRK, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s"]
            command += ["--timeout", "60s", "-s", str(script), base_url + path]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
            return json.loads(line.removeprefix("WRK_JSON "))

        if warmup_seconds > 0:
            wrk(warmup_seconds)
        cpu_before = None if server_pid is None else group_cpu_seconds(server_pid)
        summary = wrk(seconds)
        cpu_after = None if server_pid is None else group_cpu_seconds(server_pid)
    requests = summary["requests"]
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    cpu_ms = (
        None
        if cpu_before is None or cpu_after is None or not requests
        else (cpu_after - cpu_before) * 1000.0 / requests
    )
    return CLoadResult(
        requests=requests,
        concurrency=concurrency,
        p50_ms=summary["p50_us"] / 1000.0,
        p95_ms=summary["p95_us"] / 1000.0,
        p99_ms=summary["p99_us"] / 1000.0,
        mean_ms=summary["mean_us"] / 1000.0,
        requests_per_second=requests / (summary["duration_us"] / 1e6),
        errors=errors,
        status_counts={"non-2xx or socket error": errors, "ok": requests - errors},
        server_cpu_ms_per_request=cpu_ms,
    )


def wrk_flood(
    base_url: str, path: str, body: bytes, content_type: str, concurrency: int, seconds: float
) -> dict:
    """`concurrency` connections posting `body` to `path` for `seconds`, each sending its
    next request as soon as it has an answer (a 503 or not), as ApacheBench floods do: the
    answers by status, those that got none (connect, read, write errors and timeouts:
    dropped), and the latency percentiles."""
    if not wrk_available():
        raise WrkMissing("wrk is not installed: `apt-get install wrk` (Debian)")
    with tempfile.TemporaryDirectory() as scratch:
        script, body_file = Path(scratch) / "flood.lua", Path(scratch) / "body"
        script.write_text(_FLOOD_SCRIPT)
        body_file.write_bytes(body)
        env = {**os.environ, "WRK_BODY": str(body_file), "WRK_TYPE": content_type}
        command = [WRK, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s"]
        command += ["--timeout", "60s", "-s", str(script), base_url + path]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    summary = json.loads(line.removeprefix("WRK_JSON "))
    statuses = {k: summary[k] for k in ("200", "503", "other") if summary[k]}
    return {
        "requests": summary["requests"],
        "seconds": round(summary["duration_us"] / 1e6, 2),
        "statuses": statuses,
        "p50_ms": round(summary["p50_us"] / 1000.0, 1),
        "p99_ms": round(summary["p99_us"] / 1000.0, 1),
        "dropped": sum(summary[k] for k in ("connect", "read", "write", "timeout")),
    }


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds of every live process in process group `group` (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # pgrp; utime and stime are fields 14 and 15 of stat
            total += int(fields[11]) + int(fields[12])
    return total / ticks
