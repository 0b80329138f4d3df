"""The deploy/ manifests as the cluster would receive them: rendered by `kubectl kustomize`,
validated strictly against a pinned Kubernetes version with kubernetes-validate, and the
InferenceService against the vendored KServe v1beta1 schema."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = {name: KUBERNETES / "overlays" / name for name in ("gpu", "cpu")}
COMPONENTS = KUBERNETES / "components"
KSERVE = DEPLOY / "kserve"
TRAINING_JOB = KUBERNETES / "training-job.yaml"
# The Kubernetes release every object must validate against (kubernetes-validate's schemas).
KUBERNETES_VERSION = "1.32.0"
ISVC_SCHEMA = ROOT / "tests" / "deploy" / "schemas" / "inferenceservice-v1beta1.json"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip(
            "kubectl is not on PATH: it renders the kustomizations (`kubectl kustomize`, "
            "no cluster needed); install kubectl to run these checks"
        )
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` produces."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def overlay_with_components(tmp_path: Path, overlay: str, *components: str) -> Path:
    """A throwaway kustomization: `overlay` plus components, as a user would write it."""
    directory = tmp_path / f"{overlay}-{'-'.join(components)}"
    directory.mkdir()
    relative = lambda path: os.path.relpath(path, directory)  # noqa: E731 (no absolute paths)
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [relative(OVERLAYS[overlay])],
                "components": [relative(COMPONENTS / name) for name in components],
            }
        )
    )
    return directory


def validate_strictly(manifest: dict[str, Any]) -> None:
    """Raise if the object does not match its Kubernetes schema exactly (unknown fields
    included) at KUBERNETES_VERSION."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate is not installed; it is in the dev extra")
    import kubernetes_validate

    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def inference_service_validator():
    """A Draft 2020-12 validator of the vendored InferenceService schema, whose Kubernetes
    types resolve against the same strict definitions as validate_strictly."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate is not installed; it is in the dev extra")
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    definitions = json.loads(
        (schemas / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json").read_text()
    )
    schema = json.loads(ISVC_SCHEMA.read_text())
    registry = Registry().with_resources(
        [
            (definitions["$id"], Resource.from_contents(definitions)),
            (schema["$id"], Resource.from_contents(schema)),
        ]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment or Job, or the predictor of an InferenceService."""
    if manifest["kind"] == "InferenceService":
        return manifest["spec"]["predictor"]
    return manifest["spec"]["template"]["spec"]


def http_probes(manifests: list[dict[str, Any]]) -> Iterator[tuple[dict, dict, str]]:
    """(container, httpGet, probe kind) for every HTTP probe the manifests name."""
    for manifest in manifests:
        if manifest["kind"] not in ("Deployment", "Job", "InferenceService"):
            continue
        for container in pod_spec(manifest)["containers"]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "httpGet" in container.get(kind, {}):
                    yield container, container[kind]["httpGet"], kind


def probe_port(container: dict[str, Any], http_get: dict[str, Any]) -> int:
    """The container port number a probe targets (named or numbered)."""
    port = http_get["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number
