"""deploy/kubernetes renders, validates strictly, and agrees with the Dockerfile, compose,
pyproject.toml and app/core/settings.py: those files are the source of truth, read here, never
restated."""

from __future__ import annotations

import copy
import os
import re
import shutil
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from app.core.settings import Settings
from tests.test_deploy_files import (
    COMPOSE_FILE,
    dockerfile_arguments,
    dockerfile_cmd,
    dockerfile_env,
)
from tests.utils.manifests import (
    OVERLAYS,
    ROOT,
    http_probes,
    of_kind,
    one,
    overlay_with_components,
    pod_spec,
    probe_port,
    render,
    validate_strictly,
)

ENV_PREFIX = Settings.model_config["env_prefix"]
SECRET_SETTINGS = {"api_key"}  # never in a ConfigMap


def image_repository() -> str:
    """The image name compose builds the Dockerfile into."""
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["api"]
    return service["image"].rsplit(":", 1)[0]


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def uvicorn_port() -> int:
    cmd = dockerfile_cmd()
    return int(cmd[cmd.index("--port") + 1])


def image_user() -> int:
    return int(dockerfile_arguments("USER")[-1].split(":")[0])


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(OVERLAYS[request.param])


@pytest.fixture(scope="module")
def gpu() -> list[dict[str, Any]]:
    return render(OVERLAYS["gpu"])


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (api,) = pod_spec(one(manifests, "Deployment"))["containers"]
    return api


def test_every_object_validates_strictly(overlay) -> None:
    name, manifests = overlay
    kinds = sorted(manifest["kind"] for manifest in manifests)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ], name
    for manifest in manifests:
        validate_strictly(manifest)


def test_strict_validation_rejects_an_unknown_field(gpu) -> None:
    import jsonschema

    deployment = copy.deepcopy(one(gpu, "Deployment"))
    (api,) = pod_spec(deployment)["containers"]
    api["readinessProbes"] = api.pop("readinessProbe")  # a typo
    with pytest.raises(jsonschema.ValidationError, match="readinessProbes"):
        validate_strictly(deployment)


@pytest.mark.parametrize(
    ("name", "components"),
    [
        ("gpu", ("store-pvc",)),
        ("cpu", ("queue-depth-hpa",)),
        ("cpu", ("store-pvc", "queue-depth-hpa")),  # the gpu overlay has queue-depth-hpa already
    ],
)
def test_optional_components_render_and_validate(tmp_path: Path, name, components) -> None:
    manifests = render(overlay_with_components(tmp_path, name, *components))
    for manifest in manifests:
        validate_strictly(manifest)
    limits = container(manifests)["resources"]["limits"]
    assert limits.get("nvidia.com/gpu") == ("1" if name == "gpu" else None)


def test_gpu_overlay_asks_for_one_gpu_and_cpu_overlay_for_none(overlay) -> None:
    name, manifests = overlay
    limits = container(manifests)["resources"]["limits"]
    assert limits.get("nvidia.com/gpu") == ("1" if name == "gpu" else None)


def test_runs_as_the_images_non_root_user_locked_down(overlay) -> None:
    _, manifests = overlay
    pod = pod_spec(one(manifests, "Deployment"))
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == image_user() != 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(manifests)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context.get("privileged", False) is False
    assert pod["automountServiceAccountToken"] is False
    # With the root filesystem read-only, /tmp must be a writable volume.
    mounts = {m["mountPath"]: m for m in container(manifests)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_requests_and_limits_are_set(overlay) -> None:
    _, manifests = overlay
    resources = container(manifests)["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_one_port_from_uvicorn_to_service(overlay) -> None:
    _, manifests = overlay
    api = container(manifests)
    (port,) = api["ports"]
    assert port["containerPort"] == uvicorn_port()
    (service_port,) = one(manifests, "Service")["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    for probed_container, http_get, _ in http_probes(manifests):
        assert probe_port(probed_container, http_get) == uvicorn_port()


def test_probes_use_readiness_for_startup_and_ready_and_liveness_for_live(overlay) -> None:
    _, manifests = overlay
    api = container(manifests)
    paths = {kind: http_get["path"] for _, http_get, kind in http_probes(manifests)}
    assert paths == {
        "startupProbe": "/health/ready",
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
    }
    assert api["livenessProbe"].get("initialDelaySeconds", 0) == 0  # startupProbe covers it


def test_service_hpa_and_pdb_select_the_deployment(overlay) -> None:
    name, manifests = overlay
    deployment = one(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert one(manifests, "Service")["spec"]["selector"].items() <= labels.items()
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert budget["minAvailable"] < hpa["spec"]["minReplicas"], "a drain could never proceed"
    # CPU first, which works on any cluster with metrics-server. On a GPU pod CPU barely
    # moves while images wait, so the gpu overlay also follows queue depth (issue 14).
    cpu, *others = hpa["spec"]["metrics"]
    assert cpu["type"] == "Resource" and cpu["resource"]["name"] == "cpu"
    assert [(m["type"], m["pods"]["metric"]["name"]) for m in others] == (
        [("Pods", "wbc_queue_depth")] if name == "gpu" else []
    )


def test_queue_depth_component_adds_a_pods_metric_beside_cpu(tmp_path: Path) -> None:
    hpa = one(
        render(overlay_with_components(tmp_path, "cpu", "queue-depth-hpa")),
        "HorizontalPodAutoscaler",
    )
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "wbc_queue_depth"


def test_image_is_composes_image_at_the_project_version(overlay) -> None:
    _, manifests = overlay
    assert container(manifests)["image"] == f"{image_repository()}:{project_version()}"


def test_prestop_execs_sleep_so_it_runs_before_kubernetes_1_29(overlay) -> None:
    """The `sleep` lifecycle handler needs Kubernetes 1.29 (on by default from 1.30), and
    strict validation against 1.32 would not notice it; an exec of sleep runs anywhere."""
    _, manifests = overlay
    pre_stop = container(manifests)["lifecycle"]["preStop"]
    assert pre_stop == {"exec": {"command": ["sleep", "5"]}}


HEREDOC = re.compile(r"^cat > (\S+) <<'EOF'\n(.*?)^EOF$", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("readme", ["deploy/README.md"])
def test_readme_overlays_take_the_image_the_readme_pushes(tmp_path: Path, readme) -> None:
    """Each overlay the README writes (`cat > ... <<'EOF'`), beside a copy of deploy/,
    renders with the image its `docker push` sent to the registry, not the bare name."""
    text = (ROOT / readme).read_text()
    pushed = set(re.findall(r"^docker push (\S+)$", text, re.MULTILINE))
    overlays = HEREDOC.findall(text)
    assert pushed and overlays, f"{readme}: no `docker push` or no overlay to apply"
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    for path, content in overlays:
        target = tmp_path / path
        target.parent.mkdir(parents=True)
        target.write_text(content)
        workloads = [
            m for m in render(target.parent) if m["kind"] in ("Deployment", "InferenceService")
        ]
        assert workloads, path
        for workload in workloads:
            (api,) = pod_spec(workload)["containers"]
            assert api["image"] in pushed, f"{path}: {api['image']} was never pushed"


def configmap_env(manifests: list[dict[str, Any]]) -> dict[str, str]:
    deployment_refs = [source["configMapRef"]["name"] for source in container(manifests)["envFrom"]]
    (configmap,) = [
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"] in deployment_refs
    ]
    return configmap["data"]


def test_configmap_names_only_real_non_secret_settings(overlay) -> None:
    _, manifests = overlay
    names = set(configmap_env(manifests))
    settings = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    secrets = {ENV_PREFIX + field.upper() for field in SECRET_SETTINGS}
    assert not names - settings, f"not settings of app/core/settings.py: {sorted(names - settings)}"
    assert not names & secrets, "secrets belong in a Secret, not a ConfigMap"
    assert {"WBC_STORE_DIR", "WBC_MODEL_NAME", "WBC_API_KEYS_FILE"} <= names


def test_configmap_values_are_the_service_defaults_but_the_paths(
    overlay, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, manifests = overlay
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    defaults = Settings().model_dump()
    for name, value in configmap_env(manifests).items():
        monkeypatch.setenv(name, value)
    configured = Settings().model_dump()
    paths = ("store_dir", "api_keys_file")
    assert str(configured["store_dir"]) == dockerfile_env()["WBC_STORE_DIR"]
    assert configured["api_keys_file"] is not None, "the API must not run open"
    assert {k: v for k, v in configured.items() if k not in paths} == {
        k: v for k, v in defaults.items() if k not in paths
    }


def test_api_keys_file_is_the_mounted_secret(overlay) -> None:
    _, manifests = overlay
    keys_file = PurePosixPath(configmap_env(manifests)["WBC_API_KEYS_FILE"])
    pod = pod_spec(one(manifests, "Deployment"))
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    matches = [
        (mount, volumes[mount["name"]]["secret"])
        for mount in container(manifests)["volumeMounts"]
        if "secret" in volumes[mount["name"]]
        and keys_file.parent == PurePosixPath(mount["mountPath"])
    ]
    assert len(matches) == 1, f"no Secret is mounted at {keys_file.parent}"
    mount, secret = matches[0]
    assert mount["readOnly"] is True
    assert any(item["path"] == keys_file.name for item in secret["items"])
    assert secret.get("optional", False) is False, "a missing key Secret must stop the pod"


def test_store_is_the_images_and_the_pvc_variant_mounts_read_only_over_it(
    tmp_path: Path,
) -> None:
    store_dir = dockerfile_env()["WBC_STORE_DIR"]
    manifests = render(overlay_with_components(tmp_path, "gpu", "store-pvc"))
    assert configmap_env(manifests)["WBC_STORE_DIR"] == store_dir
    (mount,) = [m for m in container(manifests)["volumeMounts"] if m["mountPath"] == store_dir]
    assert mount["readOnly"] is True
    volumes = {
        volume["name"]: volume for volume in pod_spec(one(manifests, "Deployment"))["volumes"]
    }
    claim = volumes[mount["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    assert claim["claimName"] == one(manifests, "PersistentVolumeClaim")["metadata"]["name"]
    # Without the component the baked-in store serves: nothing is mounted there.
    plain = render(OVERLAYS["gpu"])
    assert store_dir not in {m["mountPath"] for m in container(plain)["volumeMounts"]}
