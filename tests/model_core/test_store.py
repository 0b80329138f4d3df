import json

import numpy as np
import pytest

from model_core.store.entries import (
    ChecksumMismatch,
    EntryNotFound,
    entry_dir,
    list_versions,
    load_entry,
    read_manifest,
    sha256_file,
    verify_artefact,
)
from model_core.store.manifest import MODEL_FILE, ONNX_FILE, WEIGHTS_FILE
from tests.utils.files import corrupt
from tests.utils.models import TINY_CLASSES, publish_tiny_model


def test_versions_are_integers_and_never_overwritten(tmp_path):
    first, _, _ = publish_tiny_model(tmp_path)
    first_digest = sha256_file(first / MODEL_FILE)
    second, manifest, _ = publish_tiny_model(tmp_path)
    assert list_versions(tmp_path, "tiny") == [1, 2]
    assert manifest.version == 2
    assert entry_dir(tmp_path, "tiny") == second
    assert entry_dir(tmp_path, "tiny", 1) == first
    assert sha256_file(first / MODEL_FILE) == first_digest
    with pytest.raises(EntryNotFound, match="no version 7"):
        entry_dir(tmp_path, "tiny", 7)
    with pytest.raises(EntryNotFound, match="no versions of model 'other'"):
        entry_dir(tmp_path, "other")


def test_manifest_records_the_contract(tmp_path):
    directory, _, _ = publish_tiny_model(tmp_path)
    manifest = read_manifest(directory)
    assert manifest.class_names == TINY_CLASSES
    assert manifest.input_size == (32, 32)
    assert manifest.layers.explanation == "fire6"
    assert manifest.layers.logits == "logits"
    assert manifest.preprocessing.scale == pytest.approx(1 / 255)
    assert set(manifest.artefacts) == {MODEL_FILE, WEIGHTS_FILE, ONNX_FILE}
    for name, digest in manifest.artefacts.items():
        assert sha256_file(directory / name) == digest
    raw = json.loads((directory / "manifest.json").read_text())
    assert raw["framework"]["tensorflow"] and raw["framework"]["keras"]


def test_reloaded_model_predicts_like_the_original(tmp_path):
    directory, _, in_memory = publish_tiny_model(tmp_path)
    _, reloaded = load_entry(directory)
    inputs = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(reloaded(inputs).numpy(), in_memory(inputs).numpy(), atol=1e-6)


def test_tampered_artefact_is_refused(tmp_path):
    directory, _, _ = publish_tiny_model(tmp_path)
    corrupt(directory / MODEL_FILE)
    with pytest.raises(ChecksumMismatch, match="model.keras has SHA-256"):
        load_entry(directory)


def test_missing_artefact_is_refused(tmp_path):
    directory, _, _ = publish_tiny_model(tmp_path)
    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(ChecksumMismatch, match="missing"):
        load_entry(directory)


def test_a_bad_onnx_file_does_not_stop_the_keras_model_from_loading(tmp_path):
    # Whoever runs model.onnx verifies it (model_core.onnx_forward); Keras serving needs
    # only its own artefacts.
    directory, _, _ = publish_tiny_model(tmp_path)
    corrupt(directory / ONNX_FILE, "replace", data=b"not an onnx model")
    manifest, _ = load_entry(directory)
    with pytest.raises(ChecksumMismatch, match="model.onnx has SHA-256"):
        verify_artefact(directory, manifest, ONNX_FILE)
