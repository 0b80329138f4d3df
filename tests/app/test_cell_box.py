"""Find the cell, then classify it: a model whose manifest asks for localisation answers
with the white cell's box, classifies the window around it, falls back to the whole frame
(and says so) when no single cell is found, and draws its heat map back into the frame."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.settings import Settings
from app.main import create_app
from model_core.inputs.localisation import window_rect
from model_core.store.entries import read_manifest, write_manifest
from model_core.store.manifest import Localisation
from tests.utils.images import encode
from tests.utils.models import copy_entry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_BOXES = json.loads((EXAMPLES / "examples.json").read_text())["images"]


@pytest.fixture(scope="module")
def localising_client(tmp_path_factory):
    """The bundled v3 (a whole-frame model: its labels on windows mean little here), told
    by its manifest to find the white cell and classify the window around it."""
    store = tmp_path_factory.mktemp("localising-store")
    directory = copy_entry(ROOT / "model_store" / "wbc-squeezenet" / "3", store, 3)
    manifest = read_manifest(directory)
    preprocessing = manifest.preprocessing.model_copy(update={"localisation": Localisation()})
    write_manifest(directory, manifest.model_copy(update={"preprocessing": preprocessing}))
    with TestClient(create_app(Settings(store_dir=store))) as client:
        yield client


def _post(client: TestClient, route: str, payload: bytes, **params):
    return client.post(route, params=params, files={"file": ("smear.jpeg", payload)})


def _centre_inside(box: list[int], wbc: list[int]) -> bool:
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return wbc[0] <= centre_x <= wbc[2] and wbc[1] <= centre_y <= wbc[3]


@pytest.mark.parametrize("name", sorted(EXAMPLE_BOXES))
def test_predict_answers_the_cell_box_inside_the_annotated_cell(localising_client, name):
    response = _post(localising_client, "/predict", (EXAMPLES / name).read_bytes())
    assert response.status_code == 200
    prediction = response.json()["predictions"][0]
    assert prediction["region"] == "cell"
    box = prediction["cell_box"]
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
    assert _centre_inside(box, EXAMPLE_BOXES[name]["wbc_boxes_xyxy"][0])


def test_a_full_resolution_upload_gets_its_box_in_its_own_pixels(localising_client):
    smear = Image.open(EXAMPLES / "neutrophil-1.jpeg")
    small = _post(localising_client, "/predict", encode(smear, "PNG")).json()
    large = _post(
        localising_client, "/predict", encode(smear.resize((640, 480), Image.BICUBIC), "PNG")
    ).json()
    small_box = np.array(small["predictions"][0]["cell_box"])
    large_box = np.array(large["predictions"][0]["cell_box"])
    assert np.abs(large_box - 2 * small_box).max() <= 6


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((240, 320, 3), 215, np.uint8),  # blank
        np.dstack([np.linspace(0, 255, 320, dtype=np.uint8)[None].repeat(240, 0)] * 3),  # grey
    ],
    ids=["blank", "grey-ramp"],
)
def test_no_cell_classifies_the_whole_frame_and_says_so(localising_client, pixels):
    response = _post(localising_client, "/predict", encode(Image.fromarray(pixels), "PNG"))
    assert response.status_code == 200
    prediction = response.json()["predictions"][0]
    assert prediction["cell_box"] is None
    assert prediction["region"] == "whole_frame"
    assert prediction["in_distribution"] is False
    assert "no single white cell" in prediction["ood_reason"]


def test_explanation_covers_only_the_window_around_the_cell(localising_client):
    payload = (EXAMPLES / "monocyte-1.jpeg").read_bytes()
    predicted = _post(localising_client, "/predict", payload).json()["predictions"][0]
    response = _post(localising_client, "/explain", payload, method="gradcam")
    assert response.status_code == 200
    body = response.json()
    assert body["cell_box"] == predicted["cell_box"] == body["prediction"]["cell_box"]
    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"]))))
    assert heat.shape == (240, 320)
    x0, y0, side = window_rect(tuple(body["cell_box"]), 320, Localisation())
    inside = np.zeros_like(heat, bool)
    inside[max(0, y0) : y0 + side, max(0, x0) : x0 + side] = True
    assert heat[~inside].max() == 0  # nothing outside the window the model saw
    assert heat[inside].max() == 255


def test_outline_draws_the_box_on_the_overlay(localising_client):
    payload = (EXAMPLES / "lymphocyte-1.jpeg").read_bytes()
    plain = _post(localising_client, "/explain", payload, output="overlay", alpha=0.0)
    outlined = _post(
        localising_client, "/explain", payload, output="overlay", alpha=0.0, outline="true"
    )
    x0, y0, x1, y1 = outlined.json()["cell_box"]

    def pixels(response):
        return np.asarray(
            Image.open(io.BytesIO(base64.b64decode(response.json()["overlay_png"]))).convert("RGB")
        )

    drawn = pixels(outlined)
    changed = np.any(drawn != pixels(plain), axis=2)
    assert (drawn[y0, x0:x1] == 255).all()  # the top edge is white
    assert changed[y0, x0:x1].all() and not changed[y0 + 10 : y1 - 10, x0 + 10 : x1 - 10].any()


def test_open_inference_protocol_answers_the_box_as_a_second_output(localising_client):
    metadata = localising_client.get("/v2/models/wbc-squeezenet").json()
    assert {"name": "cell_box", "datatype": "INT32", "shape": [-1, 4]} in metadata["outputs"]
    blank = encode(Image.fromarray(np.full((240, 320, 3), 215, np.uint8)), "PNG")
    images = [(EXAMPLES / "eosinophil-2.jpeg").read_bytes(), blank]
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [2],
                "data": [base64.b64encode(image).decode() for image in images],
            }
        ]
    }
    response = localising_client.post("/v2/models/wbc-squeezenet/infer", json=body)
    assert response.status_code == 200
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["cell_box"]["shape"] == [2, 4]
    rows = np.array(outputs["cell_box"]["data"]).reshape(2, 4)
    predicted = _post(localising_client, "/predict", images[0]).json()["predictions"][0]
    assert rows[0].tolist() == predicted["cell_box"]
    assert rows[1].tolist() == [-1, -1, -1, -1]
    assert outputs["probabilities"]["shape"] == [2, 4]


def test_a_model_that_does_not_localise_keeps_the_whole_frame(tiny_store):
    with TestClient(create_app(Settings(store_dir=tiny_store, model_name="tiny"))) as client:
        response = _post(client, "/predict", (EXAMPLES / "monocyte-1.jpeg").read_bytes())
        prediction = response.json()["predictions"][0]
        assert prediction["cell_box"] is None and prediction["region"] == "whole_frame"
        metadata = client.get("/v2/models/tiny").json()
        assert [output["name"] for output in metadata["outputs"]] == ["probabilities", "review"]
