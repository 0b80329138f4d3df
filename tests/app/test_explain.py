"""/explain: every method over the same real images; maps, overlays and their maths. The
methods themselves, without HTTP, are tested in tests/model_core/test_explainers.py."""

import base64
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model_core.explainers import METHODS

METHOD_NAMES = sorted(METHODS)


def _explain(client, payload: bytes, headers=None, **params):
    return client.post(
        "/explain",
        params=params,
        headers=headers or {},
        files={"file": ("cell.jpeg", payload, "image/jpeg")},
    )


def _png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_explains_real_smears(client, smear_files, method):
    for path in smear_files[:4]:
        original = Image.open(path)
        response = _explain(client, path.read_bytes(), method=method)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["method"] == method
        assert body["image_size"] == list(original.size)
        assert body["target"]["label"] == body["prediction"]["label"]
        assert body["target"]["probability"] == pytest.approx(body["prediction"]["confidence"])
        overlay, heatmap = _png(body["overlay_png"]), _png(body["heatmap_png"])
        assert overlay.mode == "RGB" and overlay.size == original.size
        assert heatmap.mode == "L" and heatmap.size == original.size
        heat = np.asarray(heatmap)
        assert heat.max() == 255 and heat.min() < 64  # normalised, not flat


def test_overlay_is_rgb_not_bgr(client, smear_files):
    """Where no heat is painted the overlay is the image itself; where it is, a jet overlay
    of the hottest pixel adds red, not blue."""
    payload = smear_files[0].read_bytes()
    body = _explain(client, payload, alpha=0.6, threshold=0.5).json()
    image = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")).astype(int)
    overlay = np.asarray(_png(body["overlay_png"])).astype(int)
    heat = np.asarray(_png(body["heatmap_png"]))
    cold, hottest = heat < 100, heat >= 250
    assert np.abs(overlay[cold] - image[cold]).max() <= 1
    shift = (overlay[hottest] - image[hottest]).mean(axis=0)
    assert shift[0] > shift[2]  # red up relative to blue: jet's peak is red


def test_target_by_label_and_by_index(client, smear_files):
    payload = smear_files[0].read_bytes()
    by_label = _explain(client, payload, target="monocyte").json()
    by_index = _explain(client, payload, target="2").json()
    assert by_label["target"]["label"] == by_index["target"]["label"] == "MONOCYTE"
    assert by_label["target"]["class_index"] == 2
    assert by_label["heatmap_png"] == by_index["heatmap_png"]


def test_accept_png_returns_the_overlay_itself(client, smear_files):
    payload = smear_files[0].read_bytes()
    response = _explain(client, payload, headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == Image.open(smear_files[0]).size and image.mode == "RGB"
    heatmap_only = _explain(client, payload, headers={"Accept": "image/png"}, output="heatmap")
    assert Image.open(io.BytesIO(heatmap_only.content)).mode == "L"


def test_output_selects_what_is_returned(client, smear_files):
    body = _explain(client, smear_files[0].read_bytes(), output="heatmap").json()
    assert body["overlay_png"] is None and body["heatmap_png"]


# The published ends of each colour map (matplotlib's tables, which OpenCV's follow): the
# RGB colour of no heat and of the peak.
COLORMAP_ENDS = {
    "jet": ((0, 0, 128), (128, 0, 0)),
    "viridis": ((68, 1, 84), (253, 231, 37)),
    "inferno": ((0, 0, 4), (252, 255, 164)),
}


def test_colormaps_paint_the_same_map_in_their_own_colours(client, smear_files):
    """Fully opaque and painted everywhere, the overlay is the colour map applied to the heat
    map: one colour per heat level, the map's own colours at no heat and at the peak, and a
    different picture for each map while the heat map stays the same."""
    payload = smear_files[0].read_bytes()
    overlays, heatmaps = {}, {}
    for name, (cold, hot) in COLORMAP_ENDS.items():
        body = _explain(client, payload, colormap=name, alpha=1.0, threshold=0.0).json()
        overlay = np.asarray(_png(body["overlay_png"])).astype(int)
        heat = np.asarray(_png(body["heatmap_png"]))
        levels = np.unique(heat)
        pairs = np.unique(np.column_stack([heat.ravel(), overlay.reshape(-1, 3)]), axis=0)
        assert len(pairs) == len(levels), f"{name}: a heat level painted in several colours"
        assert levels[0] == 0 and levels[-1] == 255
        np.testing.assert_allclose(overlay[heat == 0][0], cold, atol=2, err_msg=name)
        np.testing.assert_allclose(overlay[heat == 255][0], hot, atol=2, err_msg=name)
        overlays[name], heatmaps[name] = overlay, heat
    names = list(COLORMAP_ENDS)
    for index, first in enumerate(names):
        np.testing.assert_array_equal(heatmaps[first], heatmaps[names[0]])
        for second in names[index + 1 :]:
            differing = np.any(overlays[first] != overlays[second], axis=-1).mean()
            assert differing > 0.9, f"{first} and {second} overlays differ on {differing:.0%}"


def _detail_lost_on(heat: np.ndarray, grid: tuple[int, int]) -> float:
    """Share of the map's variation lost when it is squeezed onto `grid` (rows, columns) and
    blown back up: near 0 for a map with no more detail than the grid holds."""
    rows, columns = grid
    coarse = cv2.resize(heat, (columns, rows), interpolation=cv2.INTER_AREA)
    back = cv2.resize(coarse, (heat.shape[1], heat.shape[0]), interpolation=cv2.INTER_LINEAR)
    return float(np.linalg.norm(heat - back) / np.linalg.norm(heat - heat.mean()))


def test_other_layer_gives_a_finer_map(client, smear_files):
    """An earlier layer with at least twice the default layer's grid gives a map with detail
    the default layer's grid cannot hold: squeezed onto that grid it loses more of its
    variation than the default map does, typically far more (v3: fire4's 16x16 against
    fire5's 8x8; v5 and v6: fire4's 12x12 against fire5's 6x6)."""
    model = client.get("/models").json()["models"][0]
    keras_model = client.app.state.models.service.runtime.model

    def grid(layer: str) -> tuple[int, int]:
        return tuple(keras_model.get_layer(layer).output.shape[1:3])

    default = model["explanation_layer"]
    finer = [
        layer
        for layer in model["explainable_layers"]
        if all(f >= 2 * d for f, d in zip(grid(layer), grid(default), strict=True))
    ]
    assert finer, f"no explainable layer has twice {default}'s grid {grid(default)}"
    layer = finer[-1]  # the deepest of them
    compared = []
    for path in smear_files:
        maps = {}
        for name in (default, layer):
            body = _explain(client, path.read_bytes(), layer=name, output="heatmap").json()
            assert body["layer"] == name
            maps[name] = np.asarray(_png(body["heatmap_png"])).astype(np.float32) / 255
        # Where a model explains a crop, the maps are zero outside it: compare inside.
        rows, columns = np.nonzero((maps[default] > 0) | (maps[layer] > 0))
        height, width = rows.max() + 1 - rows.min(), columns.max() + 1 - columns.min()
        if body["cell_box"] is not None and abs(height - width) > 2:
            # The square window ran over the frame's edge, so what is left of the default
            # layer's grid no longer lines up with a grid over the visible part.
            continue
        window = np.s_[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        lost = {name: _detail_lost_on(heat[window], grid(default)) for name, heat in maps.items()}
        # Every finer map loses more than the default one; typically far more (one smear's
        # fire4 map on v6 is smooth: 1.38x).
        assert lost[layer] > 1.2 * lost[default], (path.name, lost)
        compared.append(lost[layer] / lost[default])
    assert len(compared) >= 4, compared
    assert np.median(compared) > 1.5, compared
