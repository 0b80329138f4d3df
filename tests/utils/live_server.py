"""A real uvicorn server on a free loopback port, for end-to-end tests. `live_server` starts
it, waits until /health/ready answers 200, yields a `LiveServer` and stops it on the way
out. By default the server is `uvicorn app.main:app` in a subprocess, configured through
WBC_* variables, its output collected in a log file; `in_process=True` runs
`create_app(settings)` in a thread of this process instead, for a test that reaches into
the app (to hold its worker busy, say)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_STORE = ROOT / "model_store"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    """The base URL, http://127.0.0.1:<port>."""
    process: subprocess.Popen | None = None
    """The server process (a subprocess server), e.g. to send it SIGHUP."""
    log_file: Path | None = None
    """Where a subprocess server's output goes (its JSON log lines and uvicorn's own)."""
    app: Any = None
    """The FastAPI app (an in-process server)."""
    log: str = ""
    """A subprocess server's whole output, collected once it has stopped."""


def settings_env(settings) -> dict[str, str]:
    """The WBC_* variables that give a server process the fields `settings` was given."""
    env = {}
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None:
            text = ""  # an empty variable is unset: the field's default
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"WBC_{name.upper()}"] = text
    return env


@contextmanager
def live_server(
    config=None,
    *,
    in_process: bool = False,
    log_file: Path | None = None,
    wrapper: tuple[str, ...] = (),
    extra_args: tuple[str, ...] = (),
    timeout: float = 120.0,
    serve_script: bool = False,
) -> Iterator[LiveServer]:
    """A ready server serving `config`: WBC_* variables (a mapping) or a `Settings`; the
    bundled store unless they name another. A subprocess server's output goes to `log_file`,
    else to a temporary file removed once the server stops (a pipe nobody reads would fill
    up and stall the server); either way `LiveServer.log` holds it then. `wrapper` is a
    command that execs the server's argv after its own (one that sets up a sandbox, say);
    `extra_args` go to uvicorn. `serve_script=True` starts it as a user does, with the
    README's `./scripts/serve.sh` (HOST and PORT). `in_process=True` needs a `Settings` (or
    None)."""
    if in_process:
        if wrapper or extra_args or log_file is not None:
            raise TypeError("wrapper, extra_args and log_file are for a subprocess server")
        with _thread_server(config, timeout) as server:
            yield server
        return
    env = dict(config) if isinstance(config, Mapping) else settings_env(config) if config else {}
    with _process_server(env, log_file, wrapper, extra_args, timeout, serve_script) as server:
        yield server


@contextmanager
def _process_server(
    env: dict[str, str],
    log_file: Path | None,
    wrapper: tuple[str, ...],
    extra_args: tuple[str, ...],
    timeout: float,
    serve_script: bool = False,
) -> Iterator[LiveServer]:
    temporary = log_file is None
    if log_file is None:
        handle, name = tempfile.mkstemp(prefix="wbc-server-", suffix=".log")
        os.close(handle)
        log_file = Path(name)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), *extra_args]
    if serve_script:  # HOST and PORT are its settings; it sets up .venv/ if need be
        argv, env = [str(ROOT / "scripts" / "serve.sh")], {**env, "PORT": str(port)}
    with open(log_file, "wb") as output:
        process = subprocess.Popen(
            [*wrapper, *argv],
            cwd=ROOT,
            env={**os.environ, "WBC_STORE_DIR": str(BUNDLED_STORE), "HOST": "127.0.0.1", **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process=process, log_file=log_file)
    try:
        _wait_until_ready(
            server.url,
            lambda: process.poll() is not None,
            timeout,
            lambda: log_file.read_text(errors="replace")[-2000:],
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.log = log_file.read_text(errors="replace")
        if temporary:
            log_file.unlink(missing_ok=True)


@contextmanager
def _thread_server(settings, timeout: float) -> Iterator[LiveServer]:
    import uvicorn

    from app.core.settings import Settings
    from app.main import create_app

    if settings is None:
        settings = Settings(store_dir=BUNDLED_STORE)
    if not isinstance(settings, Settings):
        raise TypeError(f"an in-process server needs a Settings, not {type(settings)}")
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    server = LiveServer(f"http://127.0.0.1:{port}", app=app)
    try:
        _wait_until_ready(
            server.url, lambda: not thread.is_alive(), timeout, lambda: "see this process's log"
        )
        yield server
    finally:
        uvicorn_server.should_exit = True
        thread.join(60)


def _wait_until_ready(
    url: str, exited: Callable[[], bool], timeout: float, log_tail: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited():
            raise RuntimeError(f"the server exited before it was ready: {log_tail()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s: {log_tail()}")
