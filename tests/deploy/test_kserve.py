"""deploy/kserve renders to an InferenceService that KServe's v1beta1 schema accepts: a
custom predictor container, on the Dockerfile's port, probed on the Open Inference
Protocol's health routes, serving the model the service serves by default."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from app.core.settings import Settings
from tests.deploy.test_kubernetes import image_repository, project_version, uvicorn_port
from tests.utils.manifests import (
    KSERVE,
    OVERLAYS,
    http_probes,
    inference_service_validator,
    one,
    probe_port,
    render,
    validate_strictly,
)


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return render(KSERVE)


@pytest.fixture(scope="module")
def isvc(manifests) -> dict[str, Any]:
    return one(manifests, "InferenceService")


@pytest.fixture(scope="module")
def predictor_container(isvc) -> dict[str, Any]:
    (found,) = isvc["spec"]["predictor"]["containers"]
    return found


def test_inference_service_matches_the_v1beta1_schema(isvc) -> None:
    inference_service_validator().validate(isvc)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda isvc: isvc["spec"]["predictor"].update(replicas=2),  # not a predictor field
        lambda isvc: isvc["spec"]["predictor"].update(scaleMetric="gpu"),
        lambda isvc: isvc["spec"]["predictor"]["containers"][0].update(port=8000),
        lambda isvc: isvc["spec"]["predictor"].pop("containers"),  # no implementation at all
        lambda isvc: isvc["metadata"].update(name="WBC_model"),
    ],
    ids=[
        "unknown-field",
        "bad-scale-metric",
        "unknown-container-field",
        "no-predictor",
        "bad-name",
    ],
)
def test_the_schema_rejects_what_kserve_rejects(isvc, break_it) -> None:
    broken = copy.deepcopy(isvc)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        inference_service_validator().validate(broken)


def test_other_objects_validate_strictly(manifests) -> None:
    others = [m for m in manifests if m["kind"] != "InferenceService"]
    assert [m["kind"] for m in others] == ["ConfigMap"]
    for manifest in others:
        validate_strictly(manifest)


def test_custom_predictor_on_the_uvicorn_port(predictor_container) -> None:
    assert predictor_container["name"] == "kserve-container"
    (port,) = predictor_container["ports"]  # Knative serves exactly one port
    assert port["containerPort"] == uvicorn_port()
    assert port["name"] == "http1"
    assert predictor_container["image"] == f"{image_repository()}:{project_version()}"
    assert {"name": "PROTOCOL", "value": "v2"} in predictor_container["env"]


def test_probes_are_the_protocols_health_routes_on_the_serving_port(manifests) -> None:
    probes = {kind: (container, http_get) for container, http_get, kind in http_probes(manifests)}
    assert set(probes) == {"readinessProbe", "livenessProbe"}  # Knative takes no startupProbe
    assert probes["readinessProbe"][1]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"][1]["path"] == "/v2/health/live"
    for container, http_get in probes.values():
        assert probe_port(container, http_get) == uvicorn_port()


def test_serves_the_default_model_under_its_own_name(isvc, manifests) -> None:
    assert isvc["metadata"]["name"] == Settings().model_name
    (configmap,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    assert configmap["data"]["WBC_MODEL_NAME"] == isvc["metadata"]["name"]


def test_gpu_raw_deployment_scaled_by_hpa_on_cpu(isvc, predictor_container) -> None:
    assert predictor_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    predictor = isvc["spec"]["predictor"]
    assert predictor["scaleMetric"] == "cpu"
    assert 0 < predictor["minReplicas"] <= predictor["maxReplicas"]


def test_same_settings_secret_and_security_as_the_deployment(
    manifests, isvc, predictor_container
) -> None:
    gpu = render(OVERLAYS["gpu"])
    deployment = one(gpu, "Deployment")
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    ours, theirs = one(manifests, "ConfigMap"), one(gpu, "ConfigMap")
    assert ours["data"] == theirs["data"]
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]  # same hash: same content
    assert predictor_container["envFrom"] == api["envFrom"]
    assert predictor_container["securityContext"] == api["securityContext"]
    assert predictor_container["volumeMounts"] == api["volumeMounts"]
    pod = deployment["spec"]["template"]["spec"]
    assert isvc["spec"]["predictor"]["securityContext"] == pod["securityContext"]
    secrets = [v["secret"] for v in isvc["spec"]["predictor"]["volumes"] if "secret" in v]
    assert secrets == [v["secret"] for v in pod["volumes"] if "secret" in v]
