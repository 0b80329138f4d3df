"""/explain: every method over the same real images; maps, overlays and their maths."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from model_core.explainers import METHODS

METHOD_NAMES = sorted(METHODS)


def _explain(client, payload: bytes, headers=None, **params):
    return client.post("/explain", params=params, headers=headers or {},
                       files={"file": ("cell.jpeg", payload, "image/jpeg")})


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


@pytest.mark.parametrize("colormap", ["jet", "viridis", "inferno"])
def test_colormaps(client, smear_files, colormap):
    response = _explain(client, smear_files[0].read_bytes(), colormap=colormap)
    assert response.status_code == 200


def test_other_layer_gives_a_finer_map(client, smear_files):
    body = _explain(client, smear_files[0].read_bytes(), layer="fire5").json()
    assert body["layer"] == "fire5"


def test_cam_and_gradcam_agree_for_a_gap_dense_model(client, smear_files):
    """For GAP -> Dense, dy^c/dA^k_ij = w_k^c / Z, so Grad-CAM's weights are CAM's over Z."""
    service = client.app.state.models.service
    runtime = service.runtime
    inputs = np.stack([runtime.preprocess(np.asarray(Image.open(p).convert("RGB")))
                       for p in smear_files[:6]])
    targets = np.full(len(inputs), -1, np.int32)
    gradients = runtime.gradients(inputs, targets, runtime.manifest.layers.features)
    cam = METHODS["cam"].heatmaps(gradients, gradients.targets, runtime)
    gradcam = METHODS["gradcam"].heatmaps(gradients, gradients.targets, runtime)
    np.testing.assert_allclose(cam, gradcam, atol=1e-4)
    assert cam.reshape(len(inputs), -1).max(axis=1) == pytest.approx(1.0)


def test_one_backward_pass_for_a_batch_matches_single_passes(client, smear_files):
    runtime = client.app.state.models.service.runtime
    inputs = np.stack([runtime.preprocess(np.asarray(Image.open(p).convert("RGB")))
                       for p in smear_files[:4]])
    targets = np.array([0, 1, 2, 3], np.int32)
    for method in METHODS.values():
        layer = method.layer_for(None, runtime)
        together = runtime.gradients(inputs, targets, layer)
        for index in range(4):
            alone = runtime.gradients(inputs[index : index + 1], targets[index : index + 1], layer)
            np.testing.assert_allclose(together.gradients[index], alone.gradients[0], atol=1e-5)
            np.testing.assert_allclose(
                method.heatmaps(together, together.targets, runtime)[index],
                method.heatmaps(alone, alone.targets, runtime)[0], atol=1e-4,
            )
