"""model_core.explainers on the bundled model, without HTTP: one parametrized test runs every
method over the same real smears, layers and targets (as pytorch-grad-cam's
test_run_all_models.py runs every method over every model), then the maths that tie the
methods together. What /explain makes of the maps is tested in tests/app/test_explain*.py."""

import numpy as np
import pytest
from PIL import Image

from model_core.errors import UnknownLayer
from model_core.explainers import METHODS
from model_core.runtime import ModelRuntime
from tests.conftest import BUNDLED_MODEL, BUNDLED_STORE, BUNDLED_VERSION

METHOD_NAMES = sorted(METHODS)
LAYERS = ["default", "features", "finer"]
TARGETS = ["predicted", "each class"]


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    return ModelRuntime.load(BUNDLED_STORE, BUNDLED_MODEL, BUNDLED_VERSION)


def _inputs(runtime: ModelRuntime, paths) -> np.ndarray:
    return np.stack([runtime.preprocess(np.asarray(Image.open(p).convert("RGB"))) for p in paths])


def _grid(runtime: ModelRuntime, layer: str) -> tuple[int, int]:
    return tuple(runtime.model.get_layer(layer).output.shape[1:3])


def _requested_layer(runtime: ModelRuntime, which: str) -> str | None:
    """None (the manifest's explanation layer), the layer feeding the pooling, or the
    deepest explainable layer with a finer grid than the explanation layer's."""
    if which == "default":
        return None
    if which == "features":
        return runtime.manifest.layers.features
    default = _grid(runtime, runtime.manifest.layers.explanation)
    finer = [
        layer
        for layer in runtime.explainable_layers()
        if all(f > d for f, d in zip(_grid(runtime, layer), default, strict=True))
    ]
    return finer[-1]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_over_the_same_cases(runtime, smear_files, name, layer, target):
    """Each method on four real smears, for each layer choice and target: maps on the
    layer's grid, in [0, 1], min-max scaled; a method fixed to one layer refuses another."""
    method = METHODS[name]
    requested = _requested_layer(runtime, layer)
    features = runtime.manifest.layers.features
    if method.fixed_layer and requested not in (None, features):
        with pytest.raises(UnknownLayer, match="explains only the layer feeding"):
            method.layer_for(requested, runtime)
        return
    explained = method.layer_for(requested, runtime)
    if method.fixed_layer:
        assert explained == features
    else:
        assert explained == (requested or runtime.manifest.layers.explanation)

    inputs = _inputs(runtime, smear_files[:4])
    targets = np.full(4, -1, np.int32) if target == "predicted" else np.arange(4, dtype=np.int32)
    gradients = runtime.gradients(inputs, targets, explained)
    maps = method.heatmaps(gradients, gradients.targets, runtime)

    predicted = gradients.probabilities.argmax(axis=1)
    np.testing.assert_array_equal(gradients.targets, np.where(targets < 0, predicted, targets))
    assert maps.dtype == np.float32
    assert maps.shape == (4, *_grid(runtime, explained))
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    peaks, lows = maps.reshape(4, -1).max(axis=1), maps.reshape(4, -1).min(axis=1)
    # Each map is scaled to [0, 1], or all zero where no pixel has evidence for its class.
    assert np.all(lows == 0.0)
    assert np.all(np.isclose(peaks, 1.0) | (peaks == 0.0)), peaks
    if target == "predicted":
        assert peaks == pytest.approx(1.0)  # the predicted class always has evidence


def test_cam_and_gradcam_agree_for_a_gap_dense_model(runtime, smear_files):
    """For GAP -> Dense, dy^c/dA^k_ij = w_k^c / Z, so Grad-CAM's weights are CAM's over Z."""
    inputs = _inputs(runtime, smear_files[:6])
    targets = np.full(len(inputs), -1, np.int32)
    gradients = runtime.gradients(inputs, targets, runtime.manifest.layers.features)
    cam = METHODS["cam"].heatmaps(gradients, gradients.targets, runtime)
    gradcam = METHODS["gradcam"].heatmaps(gradients, gradients.targets, runtime)
    np.testing.assert_allclose(cam, gradcam, atol=1e-4)
    assert cam.reshape(len(inputs), -1).max(axis=1) == pytest.approx(1.0)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_one_backward_pass_for_a_batch_matches_single_passes(runtime, smear_files, name):
    method = METHODS[name]
    inputs = _inputs(runtime, smear_files[:4])
    targets = np.array([0, 1, 2, 3], np.int32)
    layer = method.layer_for(None, runtime)
    together = runtime.gradients(inputs, targets, layer)
    for index in range(4):
        alone = runtime.gradients(inputs[index : index + 1], targets[index : index + 1], layer)
        np.testing.assert_allclose(together.gradients[index], alone.gradients[0], atol=1e-5)
        np.testing.assert_allclose(
            method.heatmaps(together, together.targets, runtime)[index],
            method.heatmaps(alone, alone.targets, runtime)[0],
            atol=1e-4,
        )
