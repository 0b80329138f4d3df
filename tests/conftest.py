"""Real objects for the tests: the bundled model, a real app with its lifespan, a real
uvicorn server on a loopback port, the real smears that live in examples/, and the full
data set (only for full training and full-split evaluation) when it is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.utils.images import DATA_DIR, Smear, example_smears, test_simple_images
from tests.utils.live_server import live_server

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `data` every test that needs the full data set (through `data_dir`, directly or
    by another fixture), so `-m "not data"` deselects them before they run."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


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


@pytest.fixture(scope="session")
def server_url():
    """A real uvicorn server serving the bundled model (`tests.utils.live_server` starts
    one with other settings)."""
    with live_server() as server:
        yield server.url
