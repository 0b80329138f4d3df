"""An image through the service gives the probabilities the training pipeline gives it."""

import numpy as np
import pytest

from model_store.store import load_entry
from training.data import list_split, load_images
from training.evaluate import predict_probabilities


def test_service_matches_training_pipeline(client, data_dir):
    runtime = client.app.state.models.service.runtime
    manifest, model = load_entry(runtime.directory)
    data = load_images(*list_split(data_dir / "images" / "TEST_SIMPLE", manifest.class_names))
    picked = list(range(0, len(data), 7))
    expected = predict_probabilities(model, data, manifest)[picked]
    files = [("file", (p.name, p.read_bytes(), "image/jpeg"))
             for p in (data.paths[i] for i in picked)]
    served = client.post("/predict", files=files).json()["predictions"]
    got = np.array([list(p["probabilities"].values()) for p in served])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["class_index"] for p in served] == list(expected.argmax(axis=1))
    assert len(picked) == pytest.approx(11, abs=1)
