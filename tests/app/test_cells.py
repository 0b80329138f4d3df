"""Every white cell: /predict lists each cell found (largest first) with its own answer, the
top-level fields stay the main cell's, and /explain?cell=<index> explains one of them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.utils.images import encode


def _two_cell_field(smears, first: int, second: int) -> Image.Image:
    """Two example smears side by side: one field of 640x240 at the data set's scale."""
    left = Image.open(smears[first].path).convert("RGB")
    right = Image.open(smears[second].path).convert("RGB")
    field = Image.new("RGB", (640, 240))
    field.paste(left, (0, 0))
    field.paste(right, (320, 0))
    return field


def _post(client, route: str, image: Image.Image, **params):
    return client.post(
        route, params=params, files={"file": ("field.png", encode(image), "image/png")}
    )


def _labels_by_side(smears) -> dict[str, str]:
    return {smear.path.name: smear.label for smear in smears}


def test_each_cell_of_a_two_cell_field_gets_its_own_answer(client, smears):
    eosinophil = next(i for i, s in enumerate(smears) if s.label == "EOSINOPHIL")
    lymphocyte = next(i for i, s in enumerate(smears) if s.label == "LYMPHOCYTE")
    field = _two_cell_field(smears, eosinophil, lymphocyte)
    response = _post(client, "/predict", field)
    assert response.status_code == 200, response.text
    answer = response.json()["predictions"][0]
    cells = answer["cells"]
    assert len(cells) >= 2, cells
    # The two largest are the two smears' cells (a smear may show a fragment of another).
    by_side = {("left" if c["cell_box"][2] <= 330 else "right"): c for c in cells[:2]}
    assert set(by_side) == {"left", "right"}
    assert by_side["left"]["label"] == "EOSINOPHIL"
    assert by_side["right"]["label"] == "LYMPHOCYTE"
    # Largest first, and the top level is the first cell's answer.
    areas = [
        (c["cell_box"][2] - c["cell_box"][0]) * (c["cell_box"][3] - c["cell_box"][1]) for c in cells
    ]
    assert areas == sorted(areas, reverse=True)
    for key in ("label", "cell_box", "probabilities", "calibrated_confidence", "in_distribution"):
        assert answer[key] == cells[0][key]
    assert answer["region"] == "cell" and all(c["region"] == "cell" for c in cells)
    for cell in cells:
        assert set(cell) >= {"label", "class_index", "confidence", "probabilities", "ood_reason"}
        assert sum(cell["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_a_single_cell_smear_lists_one_cell_and_a_blank_none(client, smears):
    one = _post(client, "/predict", Image.open(smears[0].path).convert("RGB")).json()
    assert len(one["predictions"][0]["cells"]) == 1
    blank = _post(client, "/predict", Image.new("RGB", (320, 240), (230, 200, 210))).json()
    prediction = blank["predictions"][0]
    assert prediction["cells"] == [] and prediction["region"] == "whole_frame"
    assert prediction["in_distribution"] is False


def _heat_columns(body: dict) -> np.ndarray:
    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"]))))
    return heat.sum(axis=0)


def test_explain_takes_the_cell_to_explain(client, smears):
    field = _two_cell_field(smears, 0, 2)
    cells = _post(client, "/predict", field).json()["predictions"][0]["cells"]
    assert len(cells) >= 2
    for index, cell in enumerate(cells[:2]):
        response = _post(client, "/explain", field, method="gradcam", cell=index)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["cell_box"] == cell["cell_box"]
        assert body["prediction"]["label"] == cell["label"]
        columns = _heat_columns(body)
        on_left = columns[:320].sum() > columns[320:].sum()
        assert on_left == (cell["cell_box"][2] <= 330)
    default = _post(client, "/explain", field, method="gradcam").json()
    assert default["cell_box"] == cells[0]["cell_box"]


@pytest.mark.parametrize("cell", ["40", "-1", "x"])
def test_a_cell_that_is_not_there_is_a_422(client, smears, cell):
    field = _two_cell_field(smears, 0, 2)
    response = _post(client, "/explain", field, cell=cell)
    assert response.status_code == 422, response.text
    assert "cell" in response.json()["error"]["message"]


def test_a_frame_without_a_cell_explains_only_cell_0(client):
    blank = Image.new("RGB", (320, 240), (230, 200, 210))
    assert _post(client, "/explain", blank, cell=0).status_code == 200
    response = _post(client, "/explain", blank, cell=1)
    assert response.status_code == 422
    assert "0 white cell" in response.json()["error"]["message"]
