"""The lock files are in step with pyproject.toml: every dependency it declares is pinned
(`==`, with hashes) at a version it allows, in the lock that installs it. ./scripts/lock.sh
refreshes them; requirements/dev.txt goes into .venv/ (scripts/setup.sh), and
requirements/service.txt into the GPU image, whose base image brings TensorFlow."""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.test_layering import PACKAGES, imports

ROOT = Path(__file__).resolve().parents[1]
DEV_LOCK = ROOT / "requirements" / "dev.txt"
SERVICE_LOCK = ROOT / "requirements" / "service.txt"
TRAINING_LOCK = ROOT / "requirements" / "training.txt"  # the training image's, over service's
# What the GPU image must not install over its own build (nor need): TensorFlow and what only
# training uses.
NOT_IN_SERVICE = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tf2onnx", "onnx"}
REFRESH = "the lock is out of step with pyproject.toml: run ./scripts/lock.sh"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>\S+)")


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: tuple[str, ...]


@cache
def locked(lock: Path) -> dict[str, Pin]:
    """The lock's packages by canonical name. Each entry is `name==version \\` then its
    `--hash=sha256:...` lines; anything else but comments and blank lines is an error."""
    pins: dict[str, Pin] = {}
    entry: tuple[str, str] | None = None
    hashes: list[str] = []

    def close() -> None:
        if entry is not None:
            pins[canonicalize_name(entry[0])] = Pin(Version(entry[1]), tuple(hashes))

    for line in lock.read_text().splitlines():
        stripped = line.strip().removesuffix("\\").strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and stripped.startswith("--hash=sha256:"):
            hashes.append(stripped.removeprefix("--hash="))
            continue
        match = PIN.match(stripped)
        assert match and not line[0].isspace(), f"{lock.name}: not a pinned package: {line!r}"
        close()
        entry, hashes = (match["name"], match["version"]), []
    close()
    return pins


@cache
def declared() -> dict[str, list[Requirement]]:
    """pyproject.toml's requirements: "base", then one list per extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"base": project["dependencies"], **project["optional-dependencies"]}
    return {group: [Requirement(line) for line in lines] for group, lines in groups.items()}


def lock_cases() -> list[tuple[str, Path]]:
    groups = declared()
    return [("base", SERVICE_LOCK), ("base", TRAINING_LOCK), ("training", TRAINING_LOCK)] + [
        (group, DEV_LOCK) for group in groups
    ]


@pytest.mark.parametrize(
    ("group", "lock"), lock_cases(), ids=lambda value: getattr(value, "name", value)
)
def test_every_declared_dependency_is_pinned_with_hashes(group: str, lock: Path) -> None:
    pins = locked(lock)
    problems = []
    for requirement in declared()[group]:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} does not allow the locked {pin.version}")
    assert problems == [], f"{REFRESH}: {problems}"


@pytest.mark.parametrize(
    "lock", [DEV_LOCK, SERVICE_LOCK, TRAINING_LOCK], ids=lambda path: path.name
)
def test_every_locked_package_has_hashes(lock: Path) -> None:
    pins = locked(lock)
    assert len(pins) > 20
    assert [name for name, pin in pins.items() if not pin.hashes] == []


def test_service_lock_leaves_tensorflow_to_the_base_image() -> None:
    service = locked(SERVICE_LOCK)
    assert [name for name in service if name in NOT_IN_SERVICE or "tensorflow" in name] == []
    training = locked(TRAINING_LOCK)  # installed over the service image: its TensorFlow too
    assert [name for name in training if "tensorflow" in name or name == "keras"] == []
    dev = locked(DEV_LOCK)
    assert {name: pin.version for name, pin in training.items() if dev[name] != pin} == {}


def test_service_lock_provides_what_the_service_imports() -> None:
    """Every third-party package that app/ and model_core/ import (anywhere, deferred imports
    included) is in the service lock, but TensorFlow and Keras, which the base image has."""
    imported = {
        name
        for module, names in imports().items()
        if module.split(".")[0] in ("app", "model_core")
        for name in names
        if name.split(".")[0] not in PACKAGES and name not in sys.stdlib_module_names
    }
    distributions = packages_distributions()
    service = locked(SERVICE_LOCK)
    missing = {
        name: distributions.get(name)
        for name in imported - {"tensorflow", "keras"}
        if not any(canonicalize_name(d) in service for d in distributions.get(name, []))
    }
    assert missing == {}, f"imported by the service, not in {SERVICE_LOCK.name}: {missing}"


def test_service_lock_pins_what_dev_tests() -> None:
    """Each package of the image has the version the tests run with (numpy, protobuf and the
    rest beside TensorFlow); lock.sh resolves service.txt with dev.txt as constraints."""
    dev, service = locked(DEV_LOCK), locked(SERVICE_LOCK)
    differing = {
        name: (str(pin.version), str(dev[name].version) if name in dev else None)
        for name, pin in service.items()
        if name not in dev or dev[name].version != pin.version
    }
    assert differing == {}, f"{REFRESH}: service vs dev {differing}"


def test_lock_parser_reads_entries_and_rejects_unpinned(tmp_path: Path) -> None:
    lock = tmp_path / "good.txt"
    lock.write_text(
        "# header\nuvicorn[standard]==0.30.1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
        "    # via wbc-explain (pyproject.toml)\nnumpy==2.0 \\\n    --hash=sha256:cc\n"
    )
    assert locked(lock) == {
        "uvicorn": Pin(Version("0.30.1"), ("sha256:aa", "sha256:bb")),
        "numpy": Pin(Version("2.0"), ("sha256:cc",)),
    }
    unpinned = tmp_path / "unpinned.txt"
    unpinned.write_text("numpy>=2 \\\n    --hash=sha256:cc\n")
    with pytest.raises(AssertionError, match="not a pinned package"):
        locked(unpinned)
