"""The review flag: every answer (and every cell) says whether a person should look at it and
why, from one documented vocabulary; the manifest's fitted threshold flags low confidence; the
Open Inference Protocol carries the flag; Prometheus counts it by reason."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.settings import Settings
from app.main import create_app
from model_core.review import REASONS
from model_core.store.entries import read_manifest, write_manifest
from model_core.store.manifest import ReviewPolicy
from tests.utils.images import encode
from tests.utils.models import copy_entry

BLANK = Image.new("RGB", (320, 240), (205, 205, 205))


def _predict(client, *images: Image.Image) -> list[dict]:
    files = [("file", (f"{i}.png", encode(image), "image/png")) for i, image in enumerate(images)]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def _check_flag(answer: dict) -> None:
    assert isinstance(answer["review"], bool)
    assert set(answer["review_reasons"]) <= set(REASONS)
    assert answer["review"] == bool(answer["review_reasons"])
    assert answer["review_reasons"] == sorted(answer["review_reasons"], key=list(REASONS).index)


def test_every_answer_and_every_cell_carries_the_flag(client, smears):
    answers = _predict(client, *(Image.open(smear.path) for smear in smears), BLANK)
    for answer in answers:
        _check_flag(answer)
        for cell in answer["cells"]:
            _check_flag(cell)
        if answer["cells"]:  # the top level is the main cell's, flag included
            assert answer["review_reasons"] == answer["cells"][0]["review_reasons"]
    blank = answers[-1]
    assert blank["review"] and "whole_frame" in blank["review_reasons"]
    assert "out_of_distribution" not in blank["review_reasons"]  # one reason, not two


def test_a_smear_of_the_data_set_is_white_balanced_and_a_crop_without_glass_is_not(client, smears):
    frame = Image.open(smears[0].path).convert("RGB")
    (whole,) = _predict(client, frame)
    assert whole["white_balance"] in ("applied", None)
    stained = Image.new("RGB", (200, 200), (120, 40, 160))  # all stain, no glass
    (crop,) = _predict(client, stained)
    if whole["white_balance"] is not None:  # the served model balances colour
        assert crop["white_balance"] == "no_background"
        assert crop["review"]


def test_an_edge_cell_is_flagged(client, smears):
    """The example smear cut through its cell: the cell is at the frame's edge."""
    frame = Image.open(smears[1].path).convert("RGB")
    (whole,) = _predict(client, frame)
    x0, y0, x1, y1 = whole["cell_box"]
    cut = frame.crop(((x0 + x1) // 2, 0, frame.width, frame.height))
    (answer,) = _predict(client, cut)
    assert answer["cell_box"] is not None and answer["cell_box"][0] == 0
    assert "cell_at_edge" in answer["review_reasons"]


def test_the_models_route_describes_the_review(client, bundled_manifest):
    review = client.get("/models").json()["models"][0]["review"]
    assert review["reasons"] == REASONS
    if bundled_manifest.review is not None:
        assert review["min_calibrated_confidence"] == pytest.approx(
            bundled_manifest.review.min_calibrated_confidence
        )
        assert 0 < review["expected_coverage"] <= 1


def test_v2_infer_carries_the_main_cells_flag(client, smears):
    images = [Image.open(smear.path) for smear in smears] + [BLANK]
    answers = _predict(client, *images)
    payload = [base64.b64encode(encode(image)).decode() for image in images]
    response = client.post(
        "/v2/models/wbc-squeezenet/infer",
        json={
            "inputs": [
                {"name": "images", "datatype": "BYTES", "shape": [len(payload)], "data": payload}
            ]
        },
    )
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    review = outputs["review"]
    assert review["datatype"] == "BOOL" and review["shape"] == [len(images)]
    assert review["data"] == [answer["review"] for answer in answers]


def test_prometheus_counts_reviews_by_reason(client):
    before = client.get("/metrics").text
    _predict(client, BLANK)
    after = client.get("/metrics").text

    def count(text: str, line: str) -> float:
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    reason = 'wbc_review_reasons_total{reason="whole_frame"}'
    assert count(after, reason) == count(before, reason) + 1
    flagged = 'wbc_answers_total{review="true"}'
    assert count(after, flagged) == count(before, flagged) + 1


@pytest.fixture(scope="module")
def strict_store(tmp_path_factory, bundled_manifest):
    """The bundled entry with a threshold no answer reaches, and one every answer does."""
    from tests.conftest import BUNDLED_STORE

    store = tmp_path_factory.mktemp("review-store")
    source = BUNDLED_STORE / bundled_manifest.name / str(bundled_manifest.version)
    for version, threshold in ((1, 1.0), (2, 0.0)):
        target = copy_entry(source, store, version)
        policy = ReviewPolicy(
            min_calibrated_confidence=threshold,
            target_accuracy=0.98,
            expected_coverage=0.5,
            expected_accuracy=0.98,
            fitted_on="a test",
        )
        write_manifest(target, read_manifest(target).model_copy(update={"review": policy}))
    return store


@pytest.mark.slow
def test_the_manifests_threshold_flags_low_confidence(strict_store, smears):
    images = [Image.open(smear.path) for smear in smears]
    for version, expect_low in ((1, True), (2, False)):
        settings = Settings(store_dir=strict_store, model_version=version)
        with TestClient(create_app(settings)) as client:
            for answer in _predict(client, *images):
                assert ("low_confidence" in answer["review_reasons"]) is expect_low
                if expect_low:
                    assert answer["review"]
            info = client.get("/models").json()["models"][0]["review"]
            assert info["min_calibrated_confidence"] == (1.0 if expect_low else 0.0)


def test_a_smear_stained_unlike_the_training_frames_is_flagged_and_the_bundled_ones_are_not(
    client, smears
):
    import cv2
    import numpy as np

    frames = [np.asarray(Image.open(smear.path).convert("RGB")) for smear in smears]
    answers = _predict(client, *(Image.fromarray(frame) for frame in frames))
    if all(answer["stain"] is None for answer in answers):
        pytest.skip("the served model does not read the stain")
    assert [answer["stain"] for answer in answers] == ["familiar"] * len(frames)
    assert not any("stain_unfamiliar" in answer["review_reasons"] for answer in answers)
    pale = []
    for frame in frames:  # another lab's much paler stain
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = (hsv[..., 1] * 0.4).astype(np.uint8)
        pale.append(Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)))
    for answer in _predict(client, *pale):
        assert answer["stain"] == "unfamiliar"
        assert answer["review"] and "stain_unfamiliar" in answer["review_reasons"]
        for cell in answer["cells"]:
            assert "stain_unfamiliar" in cell["review_reasons"]
