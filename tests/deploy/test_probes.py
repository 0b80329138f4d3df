"""The real server, run as the manifests run it: a read-only root filesystem with only /tmp
writable, the container's environment from the rendered Deployment, an API key file. Every
HTTP probe path the manifests name answers 200 without a key, and the API works."""

from __future__ import annotations

import math
import shutil
import subprocess
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.utils.live_server import live_server
from tests.utils.manifests import (
    KSERVE,
    OVERLAYS,
    TRAINING_JOB,
    http_probes,
    load,
    pod_spec,
    render,
)

API_KEY = "k" * 32
# A user and mount namespace in which / is read-only and only /tmp writable, as the pods'
# readOnlyRootFilesystem with an emptyDir at /tmp (/tmp becomes a mount of its own before
# the root is remounted read-only); `test -w /` checks it without writing.
SANDBOX = ("unshare", "--user", "--map-root-user", "--mount", "sh", "-c")
READ_ONLY = "mount --bind /tmp /tmp && mount -o remount,ro,bind / && ! test -w /"
READ_ONLY_ROOT = (*SANDBOX, READ_ONLY + ' && exec "$@"', "sh")


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    rendered = [m for directory in (*OVERLAYS.values(), KSERVE) for m in render(directory)]
    return rendered + load(TRAINING_JOB)


def _env_value(variable: dict, container: dict) -> str:
    """A container's environment variable as the kubelet sets it: its value, or a CPU
    resource of the container through the downward API (rounded up to whole divisors)."""
    if "value" in variable:
        return variable["value"]
    field = variable["valueFrom"]["resourceFieldRef"]
    kind, resource = field["resource"].split(".")  # e.g. limits.cpu
    quantity = str(container["resources"][kind][resource])
    cores = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return str(math.ceil(cores / float(field.get("divisor", "1"))))


@pytest.fixture(scope="module")
def read_only_server(manifests, tmp_path_factory) -> str:
    if (
        shutil.which("unshare") is None
        or subprocess.run([*SANDBOX, READ_ONLY], capture_output=True, timeout=30).returncode != 0
    ):
        pytest.skip(
            "cannot make a read-only root here (needs unshare with user and mount "
            "namespaces, from util-linux)"
        )
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    (api,) = pod_spec(deployment)["containers"]
    container_env = {variable["name"]: _env_value(variable, api) for variable in api["env"]}
    keys_file = tmp_path_factory.mktemp("secret") / "api-keys"
    keys_file.write_text(f"# as mounted from the Secret wbc-api-keys\n{API_KEY}\n")
    with live_server(
        {**container_env, "WBC_API_KEYS_FILE": str(keys_file), "PYTHONDONTWRITEBYTECODE": "1"},
        wrapper=READ_ONLY_ROOT,
    ) as server:
        yield server.url


def test_manifests_name_the_health_routes(manifests) -> None:
    paths = {http_get["path"] for _, http_get, _ in http_probes(manifests)}
    assert paths == {"/health/ready", "/health/live", "/v2/health/ready", "/v2/health/live"}


def test_every_probe_path_answers_200_without_a_key(read_only_server: str, manifests) -> None:
    assert httpx.get(read_only_server + "/models").status_code == 401  # the keys are on
    for path in sorted({http_get["path"] for _, http_get, _ in http_probes(manifests)}):
        response = httpx.get(read_only_server + path, timeout=10)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"


@pytest.mark.parametrize("route", ["/predict", "/explain?method=gradcam"])
def test_predicts_and_explains_on_a_read_only_root(read_only_server: str, route: str) -> None:
    image = (ROOT / "examples" / "eosinophil-1.jpeg").read_bytes()
    response = httpx.post(
        read_only_server + route,
        timeout=120,
        headers={"Authorization": f"Bearer {API_KEY}"},
        files={"file": ("smear.jpeg", image, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
