"""When the model cannot run on its device, readiness turns false with the reason instead
of staying green. The failure is real: the served model holds a layer whose allocation
TensorFlow cannot grant for batches above one (tests/utils/models.py), so TensorFlow itself
raises ResourceExhaustedError, as on a GPU out of memory; nothing is mocked or patched."""

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.settings import Settings
from app.main import create_app
from tests.utils.images import encode, smear_like_rgb
from tests.utils.models import exhausts_memory_model, publish_tiny_model

KEY = "device-test-key-0123456789"
PNG = encode(Image.fromarray(smear_like_rgb()))


def _failing_model_app(store, **settings):
    """The app of a model that fails on its device for passes of two images or more."""
    publish_tiny_model(store, model=exhausts_memory_model())
    # A long batching wait, so the two images of one request share one pass; TensorFlow's
    # own error is the one under test.
    return create_app(
        Settings(
            store_dir=store,
            model_name="tiny",
            api_key=KEY,
            batch_max_wait_ms=2000,
            forward_backend="tensorflow",
            **settings,
        )
    )


@pytest.fixture
def app_client(tmp_path):
    with TestClient(_failing_model_app(tmp_path), headers={"X-API-Key": KEY}) as client:
        yield client


def test_a_device_failure_turns_readiness_false_until_a_reload(app_client, event_log):
    one = [("file", ("a.png", PNG, "image/png"))]
    assert app_client.post("/predict", files=one).status_code == 200  # batches of one pass
    assert app_client.get("/health/ready").status_code == 200

    failed = app_client.post("/predict", files=one * 2)
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "model_unavailable"
    assert "ResourceExhaustedError" in failed.json()["error"]["message"]

    ready = app_client.get("/health/ready")
    assert ready.status_code == 503
    reason = ready.json()["error"]["message"]
    assert "ResourceExhaustedError on CPU:0" in reason and "OOM" in reason
    assert "/admin/reload" in reason
    (logged,) = event_log.events("device_failure")
    assert logged["level"] == "error" and logged["device"] == "CPU:0"
    assert "OOM" in logged["error"] and logged["model"] == "tiny"
    v2_ready = app_client.get("/v2/health/ready")
    assert v2_ready.status_code == 400 and v2_ready.json()["ready"] is False
    assert app_client.get("/v2/models/tiny/ready").json()["ready"] is False
    assert "wbc_model_ready 0.0" in app_client.get("/metrics").text
    # Within the grace (WBC_LIVENESS_GRACE_S, 60 s by default) the process stays live.
    assert app_client.get("/health/live").status_code == 200

    # A reload loads a fresh runtime even of the same version, and readiness returns.
    reloaded = app_client.post("/admin/reload")
    assert reloaded.status_code == 200 and reloaded.json()["status"] == "reloaded"
    assert app_client.get("/health/ready").status_code == 200
    assert "wbc_model_ready 1.0" in app_client.get("/metrics").text


def test_a_device_failure_that_outlasts_the_grace_fails_liveness(tmp_path, event_log):
    """With no grace, the first failure turns liveness false too (503 with the reason; the
    v2 route's 400), so an orchestrator replaces the process; a reload brings it back."""
    app = _failing_model_app(tmp_path, liveness_grace_s=0)
    with TestClient(app, headers={"X-API-Key": KEY}) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/v2/health/live").json() == {"live": True}
        one = [("file", ("a.png", PNG, "image/png"))]
        assert client.post("/predict", files=one * 2).status_code == 503

        live = client.get("/health/live")
        assert live.status_code == 503
        error = live.json()["error"]
        assert error["code"] == "device_failed"
        assert "ResourceExhaustedError" in error["message"] and "restart" in error["message"]
        v2_live = client.get("/v2/health/live")
        assert v2_live.status_code == 400 and v2_live.json()["live"] is False

        assert client.post("/admin/reload").json()["status"] == "reloaded"
        assert client.get("/health/live").status_code == 200
