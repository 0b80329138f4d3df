"""Find, write, verify and load model-store entries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from model_core.store.manifest import MANIFEST_FILE, MODEL_FILE, ONNX_FILE, Manifest

if TYPE_CHECKING:
    import keras


class StoreError(Exception):
    """A model-store entry is missing, malformed or fails verification."""


class EntryNotFound(StoreError):
    pass


class ChecksumMismatch(StoreError):
    pass


def list_versions(root: Path, name: str) -> list[int]:
    """Integer versions of `name` that hold a manifest, ascending."""
    model_dir = Path(root) / name
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in model_dir.iterdir()
        if child.name.isdigit() and (child / MANIFEST_FILE).is_file()
    )


def entry_dir(root: Path, name: str, version: int | None = None) -> Path:
    """The folder of `name` at `version`, or at its newest version when `version` is None."""
    versions = list_versions(root, name)
    if not versions:
        raise EntryNotFound(f"model store {root} holds no versions of model {name!r}")
    if version is None:
        version = versions[-1]
    if version not in versions:
        raise EntryNotFound(f"model {name!r} has no version {version} in {root}; it has {versions}")
    return Path(root) / name / str(version)


def create_next_version_dir(root: Path, name: str) -> tuple[int, Path]:
    """Create and return the folder of the next version; never reuses an existing one."""
    model_dir = Path(root) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(c.name) for c in model_dir.iterdir() if c.name.isdigit()]
    version = max(taken, default=0) + 1
    while True:
        try:
            (model_dir / str(version)).mkdir()  # fails if a concurrent run took it
            return version, model_dir / str(version)
        except FileExistsError:
            version += 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as error:
        raise EntryNotFound(f"no {MANIFEST_FILE} in {directory}") from error
    except ValueError as error:
        raise StoreError(f"{path} is not a valid manifest: {error}") from error


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write atomically, so a reader never sees half a manifest."""
    path = Path(directory) / MANIFEST_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(manifest.model_dump_json(indent=2) + "\n")
    os.replace(partial, path)
    return path


def verify_artefacts(
    directory: Path, manifest: Manifest, skip: tuple[str, ...] = (ONNX_FILE,)
) -> None:
    """Raise ChecksumMismatch unless every artefact but those in `skip` matches its recorded
    SHA-256. `model.onnx` is skipped by default: whoever loads it verifies it (a bad one
    must not stop the Keras model from loading)."""
    if MODEL_FILE not in manifest.artefacts:
        raise ChecksumMismatch(f"manifest in {directory} records no checksum for {MODEL_FILE}")
    for file_name in manifest.artefacts:
        if file_name not in skip:
            verify_artefact(directory, manifest, file_name)


def verify_artefact(directory: Path, manifest: Manifest, file_name: str) -> Path:
    """The path of one artefact, after checking it against its recorded SHA-256."""
    path = Path(directory) / file_name
    expected = manifest.artefacts.get(file_name)
    if expected is None:
        raise ChecksumMismatch(f"manifest in {directory} records no checksum for {file_name}")
    if not path.is_file():
        raise ChecksumMismatch(f"artefact {path} named in the manifest is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatch(
            f"artefact {path} has SHA-256 {actual}, the manifest expects {expected}"
        )
    return path


def load_entry(directory: Path) -> tuple[Manifest, keras.Model]:
    """Verify an entry's checksums, then load its model in Keras safe mode."""
    import keras

    manifest = read_manifest(directory)
    verify_artefacts(directory, manifest)
    try:
        model = keras.saving.load_model(Path(directory) / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file
        raise StoreError(f"cannot load {Path(directory) / MODEL_FILE}: {error}") from error
    return manifest, model
