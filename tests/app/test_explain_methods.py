"""/explain with several methods (`method=a,b` or `method=all`): one answer listing each
method, the same maps as one request per method, one decode and one backward pass per
distinct layer; the single-method answer keeps its shape. Runs on the bundled examples."""

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_core.explainers import METHODS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMEAR = (EXAMPLES / "neutrophil-2.jpeg").read_bytes()
SINGLE_KEYS = {
    "model",
    "prediction",
    "method",
    "layer",
    "target",
    "image_size",
    "overlay_png",
    "heatmap_png",
    "faithfulness",
}


def _explain(client, headers=None, payload=SMEAR, **params):
    return client.post(
        "/explain",
        params=params,
        headers=headers or {},
        files={"file": ("smear.jpeg", payload, "image/jpeg")},
    )


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64)))).astype(int)


def _counter(client, name: str, label: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf"^{name}\{{{label}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_all_methods_give_the_same_maps_as_one_request_each(client):
    body = _explain(client, method="all", target="EOSINOPHIL", colormap="viridis").json()
    assert [e["method"] for e in body["explanations"]] == sorted(METHODS)
    assert body["image_size"] == [320, 240]
    assert body["target"]["label"] == "EOSINOPHIL"
    assert body["passes_ms"] > 0
    for entry in body["explanations"]:
        single = _explain(
            client, method=entry["method"], target="EOSINOPHIL", colormap="viridis"
        ).json()
        assert set(single) >= SINGLE_KEYS and "explanations" not in single
        assert entry["layer"] == single["layer"]
        assert single["prediction"] == body["prediction"]
        assert single["target"] == body["target"]
        assert entry["latency_ms"] > 0
        for picture in ("overlay_png", "heatmap_png"):
            assert np.abs(_pixels(entry[picture]) - _pixels(single[picture])).max() <= 1


def test_the_methods_share_one_decode_and_one_pass_per_layer(client):
    passes = "wbc_batch_size_count", 'pass_kind="explanation"'
    decodes = "wbc_stage_duration_seconds_count", 'stage="decode"'
    before = _counter(client, *passes), _counter(client, *decodes)
    body = _explain(client, method="all").json()
    after = _counter(client, *passes), _counter(client, *decodes)
    layers = {entry["layer"] for entry in body["explanations"]}
    assert len(layers) < len(body["explanations"])  # here: fire6 for CAM, fire5 for the rest
    assert after[0] - before[0] == len(layers)  # four methods, one pass per distinct layer
    assert after[1] - before[1] == 1


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gradcam,layercam", ["gradcam", "layercam"]),
        ("layercam,gradcampp", ["layercam", "gradcam++"]),
        ("gradcam,GRADCAM,gradcam", ["gradcam"]),
        ("cam,", ["cam"]),
        ("gradcam, layercam", ["gradcam", "layercam"]),  # a space after the comma
        ("gradcam++ ,cam", ["gradcam++", "cam"]),  # "gradcam++" unencoded: "gradcam  "
        ("ALL", sorted(METHODS)),
    ],
)
def test_a_list_of_methods_answers_each_once_in_the_order_asked(client, spec, expected):
    response = _explain(client, method=spec, output="overlay")
    assert response.status_code == 200, response.text
    entries = response.json()["explanations"]
    assert [e["method"] for e in entries] == expected
    assert all(e["heatmap_png"] is None and e["overlay_png"] for e in entries)


def test_faithfulness_is_scored_for_each_method(client):
    body = _explain(client, method="gradcam,layercam", faithfulness="true").json()
    for entry in body["explanations"]:
        evidence = entry["faithfulness"]
        assert evidence["target_probability"] == pytest.approx(body["target"]["probability"])
        assert 0.0 <= evidence["top_removed_probability"] <= 1.0


@pytest.mark.parametrize(
    "params, headers, code",
    [
        ({"method": "gradcam,nope"}, {}, "unknown_method"),
        ({"method": ","}, {}, "unknown_method"),
        ({"method": "all", "target": "BASOPHIL"}, {}, "unknown_target"),
        ({"method": "all", "layer": "nope"}, {}, "unknown_layer"),
        ({"method": "cam", "layer": "fire4"}, {}, "unknown_layer"),  # cam explains fire6 only
    ],
)
def test_bad_lists_answer_422(client, params, headers, code):
    response = _explain(client, headers=headers, **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_a_list_asked_as_a_picture_answers_406(client):
    response = _explain(client, headers={"Accept": "image/png"}, method="gradcam,cam")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


def test_repeated_method_parameters_are_one_list(client):
    response = client.post(
        "/explain",
        params=[("method", "layercam"), ("method", "cam")],
        files={"file": ("smear.jpeg", SMEAR, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    assert [e["method"] for e in response.json()["explanations"]] == ["layercam", "cam"]


def test_a_layer_with_several_methods_goes_to_those_that_take_one(client):
    response = _explain(client, method="all", layer="fire4", output="heatmap")
    assert response.status_code == 200, response.text
    layers = {e["method"]: e["layer"] for e in response.json()["explanations"]}
    assert layers.pop("cam") != "fire4"  # CAM keeps the layer feeding the pooling
    assert set(layers.values()) == {"fire4"}


def test_a_bad_upload_answers_the_same_error_as_one_method(client):
    for method in ("all", "gradcam"):
        response = _explain(client, payload=b"not an image", method=method)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_image"
