"""Test-time mirroring (`preprocessing.flip_average`): one entry served with and without it,
through TensorFlow, ONNX Runtime and the explanation's gradient pass."""

import numpy as np
import pytest

from model_core.runtime import ONNXRUNTIME, TENSORFLOW, ModelRuntime
from model_core.store.entries import read_manifest, write_manifest
from tests.utils.models import copy_entry, publish_tiny_model
from training.pipeline.onnx_export import export_entry


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("flip-store")
    directory, _, _ = publish_tiny_model(store)  # v1: one view
    mirrored = copy_entry(directory, store, 2)  # v2: the same weights, both views
    manifest = read_manifest(mirrored)
    write_manifest(
        mirrored,
        manifest.model_copy(
            update={
                "preprocessing": manifest.preprocessing.model_copy(update={"flip_average": True})
            }
        ),
    )
    export_entry(mirrored)  # its model.onnx must answer with both views too
    return store


def inputs(count=6):
    return np.random.default_rng(3).random((count, 32, 32, 3), dtype=np.float32)


def test_the_answer_is_the_mean_of_both_views(store):
    one_view = ModelRuntime.load(store, "tiny", 1, TENSORFLOW)
    both = ModelRuntime.load(store, "tiny", 2, TENSORFLOW)
    x = inputs()
    plain, mirror = one_view.forward(x), one_view.forward(x[:, :, ::-1, :].copy())
    answer = both.forward(x)
    expected = (plain.probabilities + mirror.probabilities) / 2
    np.testing.assert_allclose(answer.probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(answer.probabilities.sum(axis=1), 1.0, atol=1e-5)
    # The logits are the log of the averaged answer, so a temperature softens that answer.
    np.testing.assert_allclose(np.exp(answer.logits), answer.probabilities, atol=1e-6)
    # The out-of-distribution features stay the unmirrored view's.
    np.testing.assert_allclose(answer.features, plain.features, atol=1e-6)
    # A mirrored input gets the same answer: the two views swap places.
    np.testing.assert_allclose(
        both.forward(x[:, :, ::-1, :].copy()).probabilities, answer.probabilities, atol=1e-6
    )


def test_onnx_runtime_serves_both_views_as_tensorflow_does(store):
    tensorflow = ModelRuntime.load(store, "tiny", 2, TENSORFLOW)
    onnx = ModelRuntime.load(store, "tiny", 2, ONNXRUNTIME)
    assert onnx.backend == ONNXRUNTIME, onnx.backend_note
    x = inputs()
    np.testing.assert_allclose(
        onnx.forward(x).probabilities, tensorflow.forward(x).probabilities, atol=1e-5
    )


def test_an_explanation_explains_the_unmirrored_view_for_the_served_answer(store):
    one_view = ModelRuntime.load(store, "tiny", 1, TENSORFLOW)
    both = ModelRuntime.load(store, "tiny", 2, TENSORFLOW)
    x = inputs()
    layer = both.manifest.layers.explanation
    served = both.forward(x)
    explained = both.gradients(x, np.full(len(x), -1, np.int32), layer)
    # The class explained by default, and the answer reported with the map, are /predict's.
    np.testing.assert_array_equal(explained.targets, served.probabilities.argmax(axis=1))
    np.testing.assert_allclose(explained.probabilities, served.probabilities, atol=1e-6)
    # The map itself is the unmirrored window's gradient of that class's score.
    plain = one_view.gradients(x, explained.targets, layer)
    np.testing.assert_allclose(explained.activations, plain.activations, atol=1e-6)
    np.testing.assert_allclose(explained.gradients, plain.gradients, atol=1e-6)
