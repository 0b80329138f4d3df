import numpy as np
import pytest

from training.pipeline.model import FIRE_MODULES, build_model


def test_architecture_is_the_tutorials_with_named_layers():
    model = build_model(4, (128, 128))
    names = {layer.name for layer in model.layers}
    for index, (squeeze, expand) in enumerate(FIRE_MODULES, start=1):
        assert model.get_layer(f"fire{index}_squeeze").filters == squeeze
        assert model.get_layer(f"fire{index}_expand1x1").filters == expand // 2
        assert model.get_layer(f"fire{index}_expand3x3").kernel_size == (3, 3)
        assert model.get_layer(f"fire{index}").output.shape[-1] == expand
        assert model.get_layer(f"fire{index}_squeeze_bn").momentum == 0.85
    assert model.get_layer("stem").kernel_size == (5, 5)
    assert model.get_layer("stem").filters == 12
    assert {"pool1", "pool5", "gap", "logits", "probabilities"} <= names
    assert "pool6" not in names
    assert tuple(model.get_layer("fire6").output.shape[1:3]) == (4, 4)
    assert tuple(model.get_layer("fire5").output.shape[1:3]) == (8, 8)
    probabilities = model(np.zeros((2, 128, 128, 3), np.float32)).numpy()
    assert probabilities.shape == (2, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_classes_follow_the_data():
    assert build_model(5, (64, 64)).output.shape[-1] == 5


def test_wide_arch_widens_every_layer_by_half():
    model = build_model(4, (96, 96), arch="wide")
    assert model.get_layer("stem").filters == 18
    assert model.get_layer("fire1_squeeze").filters == 18
    assert model.get_layer("fire3").output.shape[-1] == 96
    assert tuple(model.get_layer("fire6").output.shape[1:3]) == (3, 3)
    with pytest.raises(ValueError, match="unknown arch 'huge'"):
        build_model(4, (96, 96), arch="huge")
