"""Every HTTP probe path the manifests name answers 200 from a real server once its model is
loaded, with API keys configured as in the cluster (probes must stay open)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server
from tests.utils.manifests import KSERVE, OVERLAYS, TRAINING_JOB, http_probes, load, render


@pytest.fixture(scope="module")
def probe_paths() -> set[str]:
    manifests = [m for directory in (*OVERLAYS.values(), KSERVE) for m in render(directory)]
    manifests += load(TRAINING_JOB)
    return {http_get["path"] for _, http_get, _ in http_probes(manifests)}


@pytest.fixture(scope="module")
def keyed_server(tiny_store: Path, tmp_path_factory) -> str:
    """The real server on the tiny model, with an API key file as the pods mount it."""
    keys_file = tmp_path_factory.mktemp("secret") / "api-keys"
    keys_file.write_text("# mounted from the Secret wbc-api-keys\n" + "k" * 32 + "\n")
    process, base_url = start_server(env={
        "WBC_STORE_DIR": str(tiny_store), "WBC_MODEL_NAME": "tiny",
        "WBC_API_KEYS_FILE": str(keys_file)})
    try:
        yield base_url
    finally:
        stop_server(process)


def test_manifests_name_the_health_routes(probe_paths: set[str]) -> None:
    assert probe_paths == {"/health/ready", "/health/live", "/v2/health/ready",
                           "/v2/health/live"}


def test_every_probe_path_answers_200_without_a_key(keyed_server: str,
                                                    probe_paths: set[str]) -> None:
    assert httpx.get(keyed_server + "/models").status_code == 401  # the keys are on
    for path in sorted(probe_paths):
        response = httpx.get(keyed_server + path, timeout=10)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
