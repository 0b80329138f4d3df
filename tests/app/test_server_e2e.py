"""End to end through a real uvicorn server on a loopback port."""

import asyncio
import base64
import io

import httpx
import pytest
from PIL import Image

from tests.utils.images import png_bomb

pytestmark = pytest.mark.slow


def test_predict_and_explain_over_http(server_url, smear_files):
    payload = smear_files[0].read_bytes()
    size = Image.open(smear_files[0]).size
    with httpx.Client(base_url=server_url, timeout=60) as http:
        predicted = http.post("/predict", files={"file": ("a.jpeg", payload, "image/jpeg")})
        assert predicted.status_code == 200
        for method in ("cam", "gradcam", "gradcam++", "layercam"):
            explained = http.post(
                f"/explain?method={method}", files={"file": ("a.jpeg", payload, "image/jpeg")}
            )
            assert explained.status_code == 200
            overlay = Image.open(io.BytesIO(base64.b64decode(explained.json()["overlay_png"])))
            assert overlay.size == size
        png = http.post(
            "/explain",
            headers={"Accept": "image/png"},
            files={"file": ("a.jpeg", payload, "image/jpeg")},
        )
        assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


def test_hostile_uploads_do_not_hurt_the_server(server_url):
    with httpx.Client(base_url=server_url, timeout=60) as http:
        bomb = http.post("/predict", files={"file": ("b.png", png_bomb(), "image/png")})
        assert bomb.status_code == 413 and bomb.json()["error"]["code"] == "image_too_large"
        huge = http.post(
            "/predict", content=b"\xff" * (12 * 2**20), headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413
        garbage = http.post(
            "/predict", files={"file": ("g.jpeg", b"\xff\xd8\xff" + b"0" * 99, "image/jpeg")}
        )
        assert garbage.status_code == 400
        assert http.get("/health/ready").status_code == 200


def test_concurrent_requests_are_batched_and_answered_in_order(server_url, smear_files):
    payloads = [p.read_bytes() for p in smear_files] * 2  # 16 requests at once

    async def run():
        async with httpx.AsyncClient(base_url=server_url, timeout=120) as http:

            async def one(payload):
                response = await http.post(
                    "/predict", files={"file": ("c.jpeg", payload, "image/jpeg")}
                )
                return response.status_code, response.json()["predictions"][0]

            concurrent = await asyncio.gather(*(one(p) for p in payloads))
            sequential = [await one(p) for p in payloads]
            return concurrent, sequential

    concurrent, sequential = asyncio.run(run())
    assert all(status == 200 for status, _ in concurrent)
    for (_, together), (_, alone) in zip(concurrent, sequential, strict=True):
        assert together["label"] == alone["label"]
        assert together["confidence"] == pytest.approx(alone["confidence"], abs=1e-5)
