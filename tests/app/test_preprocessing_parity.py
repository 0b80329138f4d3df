"""An image through the service gives the probabilities the training pipeline gives it."""

import numpy as np

from model_core.store.entries import load_entry
from training.pipeline.data import load_images
from training.pipeline.evaluate import predict_probabilities


def test_service_matches_training_pipeline(client, smears):
    runtime = client.app.state.models.service.runtime
    manifest, model = load_entry(runtime.directory)
    labels = np.array([manifest.class_names.index(s.label) for s in smears], np.int32)
    data = load_images([s.path for s in smears], labels)
    expected = predict_probabilities(model, data, manifest)
    files = [("file", (s.path.name, s.path.read_bytes(), "image/jpeg")) for s in smears]
    served = client.post("/predict", files=files).json()["predictions"]
    got = np.array([list(p["probabilities"].values()) for p in served])
    assert got.shape == (8, manifest.num_classes)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["class_index"] for p in served] == list(expected.argmax(axis=1))
