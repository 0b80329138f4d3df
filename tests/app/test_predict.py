"""/predict through the real app and the bundled model, on the real smears of examples/."""

import base64

import numpy as np
import pytest


def _multipart(*payloads: bytes):
    return [("file", (f"cell{i}.jpeg", p, "image/jpeg")) for i, p in enumerate(payloads)]


def test_predicts_each_image_in_request_order(client, smear_files, bundled_manifest):
    payloads = [path.read_bytes() for path in smear_files[:4]]  # one of each class
    batch = client.post("/predict", files=_multipart(*payloads))
    assert batch.status_code == 200
    body = batch.json()
    assert body["model"] == {"name": bundled_manifest.name, "version": bundled_manifest.version}
    singles = [
        client.post("/predict", files=_multipart(p)).json()["predictions"][0] for p in payloads
    ]
    assert len(body["predictions"]) == 4
    for together, alone in zip(body["predictions"], singles, strict=True):
        assert together["label"] == alone["label"]
        for label, probability in together["probabilities"].items():
            assert probability == pytest.approx(alone["probabilities"][label], abs=1e-5)


def test_prediction_fields_are_consistent(client, smear_files, bundled_manifest):
    prediction = client.post("/predict", files=_multipart(smear_files[0].read_bytes())).json()[
        "predictions"
    ][0]
    probabilities = prediction["probabilities"]
    assert list(probabilities) == bundled_manifest.class_names
    assert set(bundled_manifest.class_names) == {
        "EOSINOPHIL",
        "LYMPHOCYTE",
        "MONOCYTE",
        "NEUTROPHIL",
    }
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert prediction["label"] == max(probabilities, key=probabilities.get)
    assert prediction["class_index"] == list(probabilities).index(prediction["label"])
    assert prediction["confidence"] == pytest.approx(probabilities[prediction["label"]])


def test_json_base64_and_data_uri_match_multipart(client, smear_files):
    payload = smear_files[1].read_bytes()
    encoded = base64.b64encode(payload).decode()
    by_json = client.post(
        "/predict", json={"images": [encoded, f"data:image/jpeg;base64,{encoded}"]}
    ).json()["predictions"]
    by_form = client.post("/predict", files=_multipart(payload)).json()["predictions"][0]
    for prediction in by_json:
        np.testing.assert_allclose(
            list(prediction["probabilities"].values()),
            list(by_form["probabilities"].values()),
            atol=1e-6,
        )


def test_bundled_model_is_right_on_most_real_smears(client, smears):
    """Six of the eight examples at least (v3 gets 6: it calls eosinophil-1 and monocyte-1
    neutrophils), and every class right at least once."""
    predictions = client.post(
        "/predict", files=_multipart(*(s.path.read_bytes() for s in smears))
    ).json()["predictions"]
    answers = [(s.path.name, s.label, p["label"]) for s, p in zip(smears, predictions, strict=True)]
    right = [(name, label) for name, label, predicted in answers if predicted == label]
    assert len(right) >= 6, answers
    assert {label for _, label in right} == {s.label for s in smears}, answers


def test_bundled_model_keeps_its_recorded_accuracy_on_test_simple(
    client, test_simple_files, bundled_manifest
):
    """Full-split evaluation through the served /predict: the accuracy the manifest records
    for TEST_SIMPLE (needs the full data set)."""
    predictions = []
    for start in range(0, len(test_simple_files), 32):
        chunk = test_simple_files[start : start + 32]
        predictions += client.post(
            "/predict", files=_multipart(*(p.read_bytes() for p in chunk))
        ).json()["predictions"]
    truth = [path.parent.name for path in test_simple_files]
    accuracy = np.mean([p["label"] == t for p, t in zip(predictions, truth, strict=True)])
    recorded = bundled_manifest.metrics["test_simple"]
    assert len(predictions) == recorded["count"]
    assert accuracy == pytest.approx(recorded["accuracy"], abs=1.5 / len(predictions))


def test_models_route_describes_the_served_model(client, bundled_manifest):
    model = client.get("/models").json()["models"][0]
    assert (model["name"], model["version"]) == (bundled_manifest.name, bundled_manifest.version)
    assert model["classes"] == bundled_manifest.class_names
    assert model["input_size"] == list(bundled_manifest.input_size)
    assert model["explanation_layer"] == bundled_manifest.layers.explanation
    assert model["explanation_layer"] in model["explainable_layers"]
    assert model["flip_average"] is bundled_manifest.preprocessing.flip_average
    assert set(model["methods"]) == {"cam", "gradcam", "gradcam++", "layercam"}
    assert model["device"] in ("CPU:0", "GPU:0")
    assert model["metrics"] == bundled_manifest.metrics
    assert model["metrics"]["test"]["accuracy"] > 0.5
    assert model["metrics"]["test_simple"]["count"] == 71  # the 71 TEST_SIMPLE images


def test_health_routes(client):
    assert client.get("/health/live").json() == {"status": "live", "model": None}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    assert "/explain" in client.get("/openapi.json").json()["paths"]
