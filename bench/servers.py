"""Run a server (an ASGI app under uvicorn, or MLServer) in its own process group on a free
loopback port, and always stop the whole group afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_ROUTE = "/health/ready"
READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0
# The process (and process group) serving each base URL while `serving_command` runs it.
_SERVER_PIDS: dict[str, int] = {}


class ServerFailed(Exception):
    """The server exited or never became ready."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def uvicorn_command(app_path: str, port: int) -> list[str]:
    """`uvicorn <app_path>`, one worker, no access log."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app_path,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
    ]


@contextmanager
def serving(app_path: str, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Start `uvicorn <app_path>` with `env` added to this process's environment, wait for
    its readiness route, yield its base URL; stop it on the way out, error or not."""
    port = free_port()
    with serving_command(uvicorn_command(app_path, port), port, env, log_path) as base_url:
        yield base_url


@contextmanager
def serving_command(
    command: list[str],
    port: int,
    env: dict[str, str],
    log_path: Path,
    ready_route: str = READY_ROUTE,
) -> Iterator[str]:
    """Start `command` (a server listening on `port`) as `serving` does."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it reaches everything
        )
    base_url = f"http://{HOST}:{port}"
    try:
        _wait_until_ready(process, base_url + ready_route, log_path)
        _SERVER_PIDS[base_url] = process.pid
        yield base_url
    finally:
        _SERVER_PIDS.pop(base_url, None)
        _stop(process)


def server_pid(base_url: str) -> int | None:
    """The pid (and process group) of the server `serving_command` runs at `base_url`."""
    return _SERVER_PIDS.get(base_url)


def _wait_until_ready(process: subprocess.Popen, ready_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(
                f"{ready_url} exited with status {process.returncode} before it "
                f"was ready; the end of {log_path}:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(ready_url, timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise ServerFailed(
        f"{ready_url} did not answer 200 within {READY_TIMEOUT_S:.0f}"
        f" s; the end of {log_path}:\n{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen) -> None:
    for stop_signal in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, stop_signal)
        except ProcessLookupError:
            break  # the group is gone already
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _tail(log_path: Path, lines: int = 30) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
