"""Real objects for the tests: the bundled model, a real app with its lifespan, a real
uvicorn server on a loopback port, and the real data set when it is present."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.utils.images import DATA_DIR, test_simple_images

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_STORE = ROOT / "model_store"

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


def start_server(env: dict[str, str] | None = None, timeout: float = 120.0):
    """Start `uvicorn app.main:app` on a free loopback port; return (process, base_url)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env={**os.environ, "WBC_STORE_DIR": str(BUNDLED_STORE), **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
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
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
