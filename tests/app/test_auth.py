"""API keys through a real app: 401 without or with a wrong key, 200 with one (either
header, from the setting or the key file); probes and metrics stay open; admin routes need
a key and are off without one; a bad key configuration stops start-up; CORS is closed by
default."""

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.settings import Settings
from app.main import create_app
from tests.utils.images import encode, smear_like_rgb

KEY = "test-key-0123456789abcdef"
FILE_KEY = "file-key-0123456789abcdef"
PNG = encode(Image.fromarray(smear_like_rgb()))
V2_INFER_BODY = {
    "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 8, 8, 3], "data": [0] * 192}]
}

PROTECTED = [
    ("GET", "/models", {}),
    ("POST", "/predict", {"files": {"file": ("a.png", PNG, "image/png")}}),
    ("POST", "/explain", {"files": {"file": ("a.png", PNG, "image/png")}}),
    ("GET", "/v2", {}),
    ("GET", "/v2/models/tiny", {}),
    ("GET", "/v2/models/tiny/ready", {}),
    ("POST", "/v2/models/tiny/infer", {"json": V2_INFER_BODY}),
    ("POST", "/admin/reload", {}),
]
OPEN = [
    "/health/live",
    "/health/ready",
    "/v2/health/live",
    "/v2/health/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
]


@pytest.fixture(scope="module")
def keyed(tiny_store, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys"
    keys_file.write_text(f"# rotated in on Monday\n\n  {FILE_KEY}  \n")
    settings = Settings(
        store_dir=tiny_store, model_name="tiny", api_key=KEY, api_keys_file=keys_file
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _call(client, method, path, kwargs, headers=None):
    return client.request(method, path, headers=headers or {}, **kwargs)


@pytest.mark.parametrize("method, path, kwargs", PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_protected_routes_need_a_valid_key(keyed, method, path, kwargs):
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"X-API-Key": KEY[:-1]},
        {"Authorization": f"Basic {KEY}"},
    ):
        response = _call(keyed, method, path, kwargs, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        error = response.json()["error"]
        if path.startswith("/v2"):
            assert isinstance(error, str) and "API key" in error  # the protocol's shape
        else:
            assert error["code"] == "unauthorized" and "API key" in error["message"]
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        {"X-API-Key": KEY},
        {"X-API-Key": FILE_KEY},
        {"authorization": f"bearer {FILE_KEY}"},
    ):
        response = _call(keyed, method, path, kwargs, headers)
        assert response.status_code == 200, (headers, response.text)


@pytest.mark.parametrize("path", OPEN)
def test_probes_metrics_and_docs_need_no_key(keyed, path):
    assert keyed.get(path).status_code == 200


def test_admin_routes_are_off_without_any_key(client):
    response = client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"
    assert "WBC_API_KEY" in response.json()["error"]["message"]
    assert client.get("/models").status_code == 200  # and the rest is open


@pytest.mark.parametrize(
    "configure, complaint",
    [
        (lambda tmp: {"api_key": "short"}, "shorter than 16"),
        (lambda tmp: {"api_keys_file": tmp / "missing"}, "cannot read"),
        (lambda tmp: {"api_keys_file": _write(tmp / "empty", "# nothing\n\n")}, "holds no key"),
    ],
)
def test_a_bad_key_configuration_stops_start_up(tmp_path, configure, complaint):
    with pytest.raises(ValueError, match=complaint):
        create_app(Settings(**configure(tmp_path)))


def _write(path, text):
    path.write_text(text)
    return path


def test_cors_is_closed_by_default_and_opens_for_listed_origins(client, tiny_store):
    preflight = {"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"}
    closed = client.options("/predict", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    settings = Settings(
        store_dir=tiny_store, model_name="tiny", api_key=KEY, cors_origins=["https://lab.example"]
    )
    with TestClient(create_app(settings)) as opened:
        # Preflights carry no credentials: CORS answers them before the key check.
        allowed = opened.options("/predict", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://lab.example"
        other = opened.options("/predict", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
