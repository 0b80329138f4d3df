"""A table of bad (and awkward but valid) inputs: each gets its status and error code, and
the service keeps answering afterwards."""

import numpy as np
import pytest
from PIL import Image

from tests.utils.images import encode, png_bomb, rgba_png, sixteen_bit_png, smear_like_rgb

JPEG = encode(Image.fromarray(smear_like_rgb()), "JPEG")


def _file(payload: bytes, content_type: str = "image/jpeg", field: str = "file"):
    return {field: ("upload", payload, content_type)}


CASES = [
    # name, route, request kwargs, expected status, expected error code (None: success)
    ("empty", "/predict", {"files": _file(b"")}, 400, "empty_image"),
    (
        "text declared as text",
        "/predict",
        {"files": _file(b"hello", "text/plain")},
        415,
        "unsupported_media_type",
    ),
    ("text declared as jpeg", "/predict", {"files": _file(b"hello there")}, 400, "invalid_image"),
    ("truncated jpeg", "/predict", {"files": _file(JPEG[: len(JPEG) // 3])}, 400, None),
    (
        "random bytes",
        "/predict",
        {"files": _file(np.random.default_rng(1).bytes(5000))},
        400,
        "invalid_image",
    ),
    (
        "gif",
        "/predict",
        {"files": _file(b"GIF89a" + bytes(64), "image/gif")},
        415,
        "unsupported_media_type",
    ),
    (
        "oversized bytes",
        "/predict",
        {"files": _file(b"\xff\xd8\xff" + bytes(11 * 2**20))},
        413,
        "payload_too_large",
    ),
    (
        "decompression bomb",
        "/predict",
        {"files": _file(png_bomb(), "image/png")},
        413,
        "image_too_large",
    ),
    (
        "1x1",
        "/predict",
        {"files": _file(encode(Image.fromarray(np.zeros((1, 1, 3), np.uint8))), "image/png")},
        400,
        "image_too_small",
    ),
    ("16-bit png", "/predict", {"files": _file(sixteen_bit_png(), "image/png")}, 200, None),
    ("rgba png", "/predict", {"files": _file(rgba_png(), "image/png")}, 200, None),
    ("wrong field name", "/predict", {"files": _file(JPEG, field="image")}, 422, "missing_image"),
    ("no body", "/predict", {}, 415, "unsupported_media_type"),
    ("json without images", "/predict", {"json": {"pictures": []}}, 422, "missing_image"),
    ("json bad base64", "/predict", {"json": {"images": ["***"]}}, 400, "invalid_image"),
    (
        "too many images",
        "/predict",
        {"files": [("file", ("a", JPEG, "image/jpeg"))] * 33},
        413,
        "too_many_images",
    ),
    ("unknown method", "/explain?method=shap", {"files": _file(JPEG)}, 422, "unknown_method"),
    ("unknown target", "/explain?target=BASOPHIL", {"files": _file(JPEG)}, 422, "unknown_target"),
    (
        "target index out of range",
        "/explain?target=9",
        {"files": _file(JPEG)},
        422,
        "unknown_target",
    ),
    ("alpha out of range", "/explain?alpha=1.5", {"files": _file(JPEG)}, 422, "invalid_parameter"),
    (
        "threshold not a number",
        "/explain?threshold=high",
        {"files": _file(JPEG)},
        422,
        "invalid_parameter",
    ),
    (
        "unknown colormap",
        "/explain?colormap=rainbow",
        {"files": _file(JPEG)},
        422,
        "invalid_parameter",
    ),
    ("unknown layer", "/explain?layer=nope", {"files": _file(JPEG)}, 422, "unknown_layer"),
    ("non-spatial layer", "/explain?layer=logits", {"files": _file(JPEG)}, 422, "unknown_layer"),
    (
        "cam on another layer",
        "/explain?method=cam&layer=fire5",
        {"files": _file(JPEG)},
        422,
        "unknown_layer",
    ),
    (
        "two images to explain",
        "/explain",
        {"files": [("file", ("a", JPEG, "image/jpeg"))] * 2},
        413,
        "too_many_images",
    ),
    ("unknown route", "/classify", {"files": _file(JPEG)}, 404, "not_found"),
    (
        "deeply nested json",
        "/predict",
        {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
        422,
        "invalid_parameter",
    ),
    (
        "far too many images",
        "/predict",
        {"files": [("file", ("a", JPEG, "image/jpeg"))] * 60},
        413,
        "too_many_images",
    ),
    ("the input layer", "/explain?layer=image", {"files": _file(JPEG)}, 422, "unknown_layer"),
    (
        "unicode digit target",
        "/explain?target=%C2%B2",
        {"files": _file(JPEG)},
        422,
        "unknown_target",
    ),
]


@pytest.mark.parametrize(
    "name, route, request_kwargs, status, code", CASES, ids=[case[0] for case in CASES]
)
def test_input_table(client, name, route, request_kwargs, status, code):
    response = client.post(route, **request_kwargs)
    assert response.status_code == status, response.text
    if status >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message"} and error["message"]
        if code is not None:
            assert error["code"] == code
    # The service still answers a good request afterwards.
    assert client.post("/predict", files=_file(JPEG)).status_code == 200
