"""/predict through the real app and the bundled model, on real TEST_SIMPLE images."""

import base64

import numpy as np
import pytest


def _multipart(*payloads: bytes):
    return [("file", (f"cell{i}.jpeg", p, "image/jpeg")) for i, p in enumerate(payloads)]


def test_predicts_each_image_in_request_order(client, smear_files):
    payloads = [path.read_bytes() for path in smear_files[:4]]  # one of each class
    batch = client.post("/predict", files=_multipart(*payloads))
    assert batch.status_code == 200
    body = batch.json()
    assert body["model"]["name"] == "wbc-squeezenet" and body["model"]["version"] >= 1
    singles = [client.post("/predict", files=_multipart(p)).json()["predictions"][0]
               for p in payloads]
    assert len(body["predictions"]) == 4
    for together, alone in zip(body["predictions"], singles, strict=True):
        assert together["label"] == alone["label"]
        for label, probability in together["probabilities"].items():
            assert probability == pytest.approx(alone["probabilities"][label], abs=1e-5)


def test_prediction_fields_are_consistent(client, smear_files):
    prediction = client.post("/predict", files=_multipart(smear_files[0].read_bytes())).json()[
        "predictions"][0]
    probabilities = prediction["probabilities"]
    assert list(probabilities) == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert prediction["label"] == max(probabilities, key=probabilities.get)
    assert prediction["class_index"] == list(probabilities).index(prediction["label"])
    assert prediction["confidence"] == pytest.approx(probabilities[prediction["label"]])


def test_json_base64_and_data_uri_match_multipart(client, smear_files):
    payload = smear_files[1].read_bytes()
    encoded = base64.b64encode(payload).decode()
    by_json = client.post("/predict", json={"images": [
        encoded, f"data:image/jpeg;base64,{encoded}"]}).json()["predictions"]
    by_form = client.post("/predict", files=_multipart(payload)).json()["predictions"][0]
    for prediction in by_json:
        np.testing.assert_allclose(list(prediction["probabilities"].values()),
                                   list(by_form["probabilities"].values()), atol=1e-6)


def test_bundled_model_is_right_on_most_real_smears(client, smear_files):
    predictions = client.post(
        "/predict", files=_multipart(*(p.read_bytes() for p in smear_files[:32]))
    ).json()["predictions"]
    truth = [path.parent.name for path in smear_files[:32]]
    accuracy = np.mean([p["label"] == t for p, t in zip(predictions, truth, strict=True)])
    assert accuracy >= 0.7


def test_models_route_describes_the_served_model(client):
    model = client.get("/models").json()["models"][0]
    assert model["classes"] == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert model["input_size"] == [128, 128]
    assert model["explanation_layer"] in model["explainable_layers"]
    assert set(model["methods"]) == {"cam", "gradcam", "gradcam++", "layercam"}
    assert model["device"] in ("CPU:0", "GPU:0")
    assert model["metrics"]["test"]["accuracy"] > 0.5
    assert model["metrics"]["test_simple"]["count"] == 71


def test_health_routes(client):
    assert client.get("/health/live").json() == {"status": "live", "model": None}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    assert "/explain" in client.get("/openapi.json").json()["paths"]
