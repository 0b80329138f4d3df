"""The ONNX Runtime forward pass on real entries of a temporary store: publishing exports it,
it answers as TensorFlow does, and a missing, corrupt or foreign `model.onnx` leaves the
entry on TensorFlow with the reason (or refuses it, for a reload)."""

import json
import shutil

import numpy as np
import pytest

from model_core.errors import OnnxUnusable
from model_core.onnx_forward import PARITY_TOLERANCE
from model_core.runtime import ModelRuntime
from model_core.store.entries import read_manifest, sha256_file, write_manifest
from model_core.store.manifest import ONNX_FILE
from tests.utils.files import corrupt
from tests.utils.models import copy_entry, publish_tiny_model
from training.pipeline.onnx_export import export_entry


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("onnx-store")
    publish_tiny_model(store)  # v1
    publish_tiny_model(store)  # v2: other random weights, the same architecture
    return store


def load(store, version, backend="auto", **options):
    return ModelRuntime.load(store, "tiny", version, backend, **options)


def inputs(count=5):
    return np.random.default_rng(7).random((count, 32, 32, 3), dtype=np.float32)


def test_publishing_writes_model_onnx_with_its_checksum(store):
    manifest = read_manifest(store / "tiny" / "1")
    assert manifest.onnx is not None and manifest.onnx.opset == 17
    assert manifest.onnx.exporter.startswith("tf2onnx ")
    # It pools the layers calibration will fit, so a calibrated entry can use its features.
    assert manifest.onnx.feature_layers == ["fire5", "fire6"]
    assert manifest.artefacts[ONNX_FILE] == sha256_file(store / "tiny" / "1" / ONNX_FILE)


@pytest.mark.parametrize(
    ("backend", "expected"),
    [("auto", "onnxruntime"), ("onnxruntime", "onnxruntime"), ("tensorflow", "tensorflow")],
)
def test_the_backend_follows_the_setting_on_a_cpu(store, backend, expected):
    runtime = load(store, 1, backend)
    assert (runtime.backend, runtime.backend_note) == (expected, None)


def test_onnx_runtime_answers_as_tensorflow_does(store):
    onnx, reference = load(store, 1, "onnxruntime"), load(store, 1, "tensorflow")
    batch = inputs()
    got, want = onnx.forward(batch), reference.forward(batch)
    assert np.abs(got.probabilities - want.probabilities).max() <= PARITY_TOLERANCE
    np.testing.assert_allclose(got.logits, want.logits, rtol=0, atol=1e-5)
    # No feature distribution in this manifest: neither backend returns features.
    assert got.features.shape == want.features.shape == (5, 0)


def test_spinning_threads_follow_the_setting_and_change_no_answer(store):
    spinning, sleeping = (
        load(store, 1, "onnxruntime"),
        load(store, 1, "onnxruntime", onnx_spinning=False),
    )
    assert (spinning._onnx.spinning, sleeping._onnx.spinning) == (True, False)
    batch = inputs()
    np.testing.assert_array_equal(
        spinning.forward(batch).probabilities, sleeping.forward(batch).probabilities
    )


def test_an_entry_without_model_onnx_serves_through_tensorflow(store):
    directory = copy_entry(store / "tiny" / "1", store, 10)
    (directory / ONNX_FILE).unlink()
    manifest = read_manifest(directory)
    artefacts = {k: v for k, v in manifest.artefacts.items() if k != ONNX_FILE}
    write_manifest(directory, manifest.model_copy(update={"onnx": None, "artefacts": artefacts}))
    runtime = load(store, 10, "onnxruntime", refuse_bad_onnx=True)
    assert runtime.backend == "tensorflow"
    assert (
        runtime.backend_note == f"the entry in {directory} has no {ONNX_FILE}; serving "
        "through TensorFlow"
    )

    written = export_entry(directory)  # what `python -m training export-onnx` does
    assert written.onnx is not None and written.onnx.feature_layers == []
    assert read_manifest(directory) == written
    assert load(store, 10).backend == "onnxruntime"


def test_a_corrupt_model_onnx_falls_back_or_is_refused(store):
    directory = copy_entry(store / "tiny" / "1", store, 11)
    corrupt(directory / ONNX_FILE)
    runtime = load(store, 11)
    assert runtime.backend == "tensorflow"
    assert (
        "has SHA-256" in runtime.backend_note
        and "serving through TensorFlow" in runtime.backend_note
    )
    with pytest.raises(OnnxUnusable, match="has SHA-256"):
        load(store, 11, refuse_bad_onnx=True)


def test_another_models_onnx_with_a_matching_checksum_is_caught_by_the_probe(store):
    directory = copy_entry(store / "tiny" / "1", store, 12)
    shutil.copyfile(store / "tiny" / "2" / ONNX_FILE, directory / ONNX_FILE)
    manifest = read_manifest(directory)
    write_manifest(
        directory,
        manifest.model_copy(
            update={
                "artefacts": {**manifest.artefacts, ONNX_FILE: sha256_file(directory / ONNX_FILE)}
            }
        ),
    )
    with pytest.raises(OnnxUnusable, match="is not this model: probabilities differs"):
        load(store, 12, refuse_bad_onnx=True)
    assert load(store, 12).backend == "tensorflow"


def test_an_onnx_pooling_other_layers_than_the_distribution_is_refused(store):
    directory = copy_entry(store / "tiny" / "1", store, 13)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["feature_distribution"] = {
        "layers": ["fire6"],
        "mean": [0.0] * 8,
        "precision": np.eye(8).tolist(),
        "threshold": 1.0,
        "threshold_quantile": 0.99,
        "fitted_on": "nothing",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OnnxUnusable, match=r"pools the features of \['fire5', 'fire6'\]"):
        load(store, 13, refuse_bad_onnx=True)
