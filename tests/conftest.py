"""Real objects for the tests: the bundled model, a real app with its lifespan, a real
uvicorn server on a loopback port, and the real data set when it is present."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.utils.images import DATA_DIR, test_simple_images

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_STORE = ROOT / "model_store"
BUNDLED_MODEL = "wbc-squeezenet"
# The version the service serves by default: the newest in the bundled store.
BUNDLED_VERSION = max(int(p.parent.name) for p in (BUNDLED_STORE / BUNDLED_MODEL).glob(
    "*/manifest.json"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "images" / "TEST_SIMPLE").is_dir():
        pytest.skip(f"needs the blood-cell data set at {DATA_DIR.resolve()} (set WBC_DATA_DIR); "
                    "it is not there")
    return DATA_DIR


@pytest.fixture(scope="session")
def smear_files(data_dir: Path) -> list[Path]:
    """Real TEST_SIMPLE images, one per class first, then the rest."""
    files = test_simple_images()
    firsts = {}
    for path in files:
        firsts.setdefault(path.parent.name, path)
    return list(firsts.values()) + [p for p in files if p not in firsts.values()]


@pytest.fixture(scope="session")
def settings():
    from app.settings import Settings

    return Settings(store_dir=BUNDLED_STORE)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A temporary store holding version 1 of the tiny model (name "tiny", 32x32 input):
    quick to load for tests of the service around the model; tests never write to it."""
    from tests.utils.models import publish_tiny_model

    store = tmp_path_factory.mktemp("tiny-store")
    publish_tiny_model(store)
    return store


@pytest.fixture
def event_log():
    """The JSON lines the app logs (requests, model events) during one test."""
    from app.logs import events_logger
    from tests.utils.logs import JsonLines

    handler, logger = JsonLines(), events_logger()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(scope="session")
def client(settings):
    """The real app, lifespan included (model loaded and warmed), in-process."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(env: dict[str, str] | None = None, timeout: float = 120.0,
                 log_file: Path | None = None):
    """Start `uvicorn app.main:app` on a free loopback port; return (process, base_url).
    Its output (the app's JSON log lines, uvicorn's own) goes to `log_file`, else to a
    temporary file: a pipe nobody reads would fill up and stall the server."""
    port = free_port()
    if log_file is None:
        handle, name = tempfile.mkstemp(prefix="wbc-server-", suffix=".log")
        os.close(handle)
        log_file = Path(name)
    with open(log_file, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env={**os.environ, "WBC_STORE_DIR": str(BUNDLED_STORE), **(env or {})},
            stdout=output, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_file.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=1.0).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError("server did not become ready in time")


@pytest.fixture(scope="session")
def server_url():
    """A real uvicorn server serving the bundled model."""
    process, base_url = start_server()
    try:
        yield base_url
    finally:
        stop_server(process)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
