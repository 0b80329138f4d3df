"""Real objects for the tests: the bundled model, a real app with its lifespan, a real
uvicorn server on a loopback port, the real smears that live in examples/, and the full
data set (only for full training and full-split evaluation) when it is present."""

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

from tests.utils.images import DATA_DIR, Smear, example_smears, test_simple_images

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_STORE = ROOT / "model_store"
BUNDLED_MODEL = "wbc-squeezenet"
# The version the service serves by default: the newest in the bundled store.
BUNDLED_VERSION = max(
    int(p.parent.name) for p in (BUNDLED_STORE / BUNDLED_MODEL).glob("*/manifest.json")
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The full blood-cell data set, for full training and full-split evaluation only. Where
    it is missing the test skips, except under CI=true, where a missing data set fails."""
    if not (DATA_DIR / "images" / "TEST_SIMPLE").is_dir():
        message = (
            f"needs the blood-cell data set at {DATA_DIR} (set WBC_DATA_DIR, or run "
            "`python -m training fetch-data`); it is not there"
        )
        if running_in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return DATA_DIR


@pytest.fixture(scope="session")
def smears() -> list[Smear]:
    """The eight real smears of examples/ with their classes and WBC boxes: one of each class
    first, then the second of each."""
    return example_smears()


@pytest.fixture(scope="session")
def smear_files(smears: list[Smear]) -> list[Path]:
    """The files of `smears`, in the same order."""
    return [smear.path for smear in smears]


@pytest.fixture(scope="session")
def example_data_dir(tmp_path_factory) -> Path:
    """The eight example smears laid out like the full data set (originals, splits.csv,
    images/TRAIN|TEST|TEST_SIMPLE): short real training and evaluation runs need no download."""
    from tests.utils.images import write_example_data_set

    return write_example_data_set(tmp_path_factory.mktemp("example-data"))


@pytest.fixture(scope="session")
def test_simple_files(data_dir: Path) -> list[Path]:
    """Every TEST_SIMPLE image of the full data set (71), for rates over the whole split."""
    return test_simple_images()


@pytest.fixture(scope="session")
def bundled_manifest():
    """The manifest of the version the service serves by default: tests read its classes,
    input size and metrics from here instead of assuming one version's numbers."""
    from model_core.store.entries import read_manifest

    return read_manifest(BUNDLED_STORE / BUNDLED_MODEL / str(BUNDLED_VERSION))


@pytest.fixture(scope="session")
def settings():
    from app.core.settings import Settings

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
    from app.core.logs import events_logger
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


def start_server(
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    log_file: Path | None = None,
    wrapper: tuple[str, ...] = (),
    extra_args: tuple[str, ...] = (),
):
    """Start `uvicorn app.main:app` on a free loopback port; return (process, base_url).
    Its output (the app's JSON log lines, uvicorn's own) goes to `log_file`, else to a
    temporary file: a pipe nobody reads would fill up and stall the server. `wrapper` is a
    command that execs the server's argv after its own (e.g. one that sets up a sandbox);
    `extra_args` go to uvicorn."""
    port = free_port()
    if log_file is None:
        handle, name = tempfile.mkstemp(prefix="wbc-server-", suffix=".log")
        os.close(handle)
        log_file = Path(name)
    with open(log_file, "wb") as output:
        process = subprocess.Popen(
            [
                *wrapper,
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *extra_args,
            ],
            cwd=ROOT,
            env={**os.environ, "WBC_STORE_DIR": str(BUNDLED_STORE), **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
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
