"""WBC_FORWARD_BACKEND behind the real app: every input form gets the same probabilities from
TensorFlow and from ONNX Runtime (within 1e-5); the backend in use is named by /models, the
v2 metadata, the load log and wbc_model_info; a corrupt model.onnx falls back to TensorFlow
at start, with a warning, and refuses a reload, with the reason."""

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.settings import Settings
from app.main import create_app
from model_core.onnx_forward import PARITY_TOLERANCE
from model_core.store.manifest import ONNX_FILE
from tests.conftest import BUNDLED_MODEL, BUNDLED_STORE
from tests.utils.files import corrupt
from tests.utils.images import encode, example_smears
from tests.utils.models import exhausts_memory_model, publish_tiny_model

KEY = "backend-test-key-0123456789"
SMEARS = [smear.path.read_bytes() for smear in example_smears()[:4]]
PIXELS = [np.asarray(Image.open(smear.path).convert("RGB")) for smear in example_smears()[4:6]]
V2 = f"/v2/models/{BUNDLED_MODEL}/infer"


@pytest.fixture(scope="module")
def clients():
    """The bundled model served twice in one process, once per backend."""
    with (
        TestClient(
            create_app(Settings(store_dir=BUNDLED_STORE, forward_backend="tensorflow"))
        ) as tensorflow,
        TestClient(
            create_app(Settings(store_dir=BUNDLED_STORE, forward_backend="onnxruntime"))
        ) as onnx,
    ):
        yield {"tensorflow": tensorflow, "onnxruntime": onnx}


def _probabilities(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.json()
    if "predictions" in body:
        return np.array([list(p["probabilities"].values()) for p in body["predictions"]])
    output = {o["name"]: o for o in body["outputs"]}["probabilities"]
    return np.array(output["data"], np.float64).reshape(output["shape"])


def _pixels_tensor(datatype: str) -> dict:
    stack = np.stack(PIXELS).astype(np.uint8 if datatype == "UINT8" else np.float32)
    return {
        "inputs": [
            {
                "name": "pixels",
                "datatype": datatype,
                "shape": list(stack.shape),
                "data": stack.ravel().tolist(),
            }
        ]
    }


FORMS = {
    "multipart": lambda http: http.post(
        "/predict", files=[("file", (f"{i}.jpeg", s, "image/jpeg")) for i, s in enumerate(SMEARS)]
    ),
    "json base64": lambda http: http.post(
        "/predict", json={"images": [base64.b64encode(s).decode() for s in SMEARS]}
    ),
    "v2 BYTES": lambda http: http.post(
        V2,
        json={
            "inputs": [
                {
                    "name": "images",
                    "datatype": "BYTES",
                    "shape": [len(SMEARS)],
                    "data": [base64.b64encode(s).decode() for s in SMEARS],
                }
            ]
        },
    ),
    "v2 UINT8 pixels": lambda http: http.post(V2, json=_pixels_tensor("UINT8")),
    "v2 FP32 pixels": lambda http: http.post(V2, json=_pixels_tensor("FP32")),
}


@pytest.mark.parametrize("form", FORMS)
def test_both_backends_give_the_same_probabilities_for_every_input_form(clients, form):
    tensorflow = _probabilities(FORMS[form](clients["tensorflow"]))
    onnx = _probabilities(FORMS[form](clients["onnxruntime"]))
    assert onnx.shape == tensorflow.shape and len(onnx) in (len(SMEARS), len(PIXELS))
    assert np.abs(onnx - tensorflow).max() <= PARITY_TOLERANCE


def test_the_out_of_distribution_flag_agrees_too(clients):
    answers = [FORMS["multipart"](clients[b]).json()["predictions"] for b in clients]
    for tensorflow, onnx in zip(*answers, strict=True):
        assert onnx["in_distribution"] == tensorflow["in_distribution"]
        assert onnx["ood_distance"] == pytest.approx(tensorflow["ood_distance"], rel=1e-4)
        assert onnx["calibrated_confidence"] == pytest.approx(
            tensorflow["calibrated_confidence"], abs=1e-5
        )


@pytest.mark.parametrize("backend", ["tensorflow", "onnxruntime"])
def test_the_backend_in_use_is_named_everywhere(clients, backend):
    http = clients[backend]
    assert http.get("/models").json()["models"][0]["backend"] == backend
    assert http.get(f"/v2/models/{BUNDLED_MODEL}").json()["parameters"]["backend"] == backend
    info = [
        line
        for line in http.get("/metrics").text.splitlines()
        if line.startswith("wbc_model_info{")
    ]
    assert len(info) == 1 and f'backend="{backend}"' in info[0]


def test_auto_serves_through_onnx_runtime_on_a_cpu(tiny_store, event_log):
    with TestClient(create_app(Settings(store_dir=tiny_store, model_name="tiny"))) as http:
        assert http.get("/models").json()["models"][0]["backend"] == "onnxruntime"
        assert (
            http.post(
                "/predict",
                files={"file": ("a.png", encode(Image.fromarray(PIXELS[0])), "image/png")},
            ).status_code
            == 200
        )
    (loaded,) = event_log.events("model_loaded")
    assert loaded["backend"] == "onnxruntime" and loaded["device"] == "CPU:0"
    assert not event_log.events("forward_backend_fallback")


def test_a_corrupt_model_onnx_falls_back_at_start_and_refuses_a_reload(tmp_path, event_log):
    first, _, _ = publish_tiny_model(tmp_path)
    corrupt(first / ONNX_FILE)
    settings = Settings(
        store_dir=tmp_path, model_name="tiny", api_key=KEY, forward_backend="onnxruntime"
    )
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as http:
        assert http.get("/models").json()["models"][0]["backend"] == "tensorflow"
        (fallback,) = event_log.events("forward_backend_fallback")
        assert fallback["level"] == "warning" and fallback["wanted"] == "onnxruntime"
        assert f"{ONNX_FILE} has SHA-256" in fallback["reason"]
        assert fallback["reason"].endswith("serving through TensorFlow")

        second, _, _ = publish_tiny_model(tmp_path)
        corrupt(second / ONNX_FILE)
        refused = http.post("/admin/reload")
        assert refused.status_code == 409
        message = refused.json()["error"]["message"]
        assert f"{ONNX_FILE} has SHA-256" in message and "still serving tiny version 1" in message
        assert http.get("/models").json()["models"][0]["version"] == 1


def test_a_failed_onnx_runtime_pass_turns_readiness_false(tmp_path):
    # The layer that asks for 2^58 bytes per batch item beyond the first, exported with the
    # model: ONNX Runtime's own allocator refuses it, as TensorFlow's does.
    publish_tiny_model(tmp_path, model=exhausts_memory_model())
    settings = Settings(
        store_dir=tmp_path,
        model_name="tiny",
        forward_backend="onnxruntime",
        onnx_max_pass_images=2,
        batch_max_wait_ms=2000,
    )
    png = encode(Image.fromarray(PIXELS[0]))
    with TestClient(create_app(settings)) as http:
        assert http.get("/models").json()["models"][0]["backend"] == "onnxruntime"
        failed = http.post("/predict", files=[("file", ("a.png", png, "image/png"))] * 2)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "model_unavailable"
        reason = http.get("/health/ready").json()["error"]["message"]
        # The allocator's own words: its arena's "Failed to allocate memory", or (the
        # service runs ONNX Runtime without an arena) the C++ runtime's std::bad_alloc.
        assert "OnnxRunFailed on CPU:0" in reason
        assert "Failed to allocate memory" in reason or "bad_alloc" in reason
