"""The cell localiser and the preprocessing contract on real smears from examples/."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_core.inputs.localisation import (
    REFERENCE_UM_PER_PX,
    cut_window,
    find_cell,
    find_cells,
    place_in_frame,
    window_rect,
)
from model_core.inputs.transform import prepare_image, to_model_input
from model_core.store.entries import read_manifest, write_manifest
from model_core.store.manifest import Localisation, Manifest, Preprocessing
from tests.utils.foreign import foreign_images
from tests.utils.models import publish_tiny_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEC = Localisation()
CROP = Preprocessing(antialias=True, localisation=SPEC)


def _examples() -> list[tuple[str, np.ndarray, list[list[int]]]]:
    table = json.loads((EXAMPLES / "examples.json").read_text())["images"]
    return [
        (
            name,
            cv2.cvtColor(cv2.imread(str(EXAMPLES / name)), cv2.COLOR_BGR2RGB),
            entry["wbc_boxes_xyxy"],
        )
        for name, entry in sorted(table.items())
    ]


def _centre_inside(box, truth) -> bool:
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return truth[0] <= x <= truth[2] and truth[1] <= y <= truth[3]


@pytest.mark.parametrize(
    "name, rgb, truths", _examples(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_cell_is_found_inside_its_annotated_box(name, rgb, truths):
    box = find_cell(rgb, SPEC)
    assert box is not None
    assert any(_centre_inside(box, truth) for truth in truths), (name, box, truths)
    # Twice the size, like a 640x480 upload: the same cell, in the bigger frame's pixels.
    big = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_LINEAR)
    big_box = find_cell(big, SPEC)
    assert big_box is not None
    assert any(_centre_inside(np.asarray(big_box) / 2, truth) for truth in truths)
    assert np.abs(np.asarray(big_box) / 2 - np.asarray(box)).max() <= 3


@pytest.mark.parametrize("name", sorted(foreign_images()))
def test_no_cell_in_blank_or_foreign_images(name):
    assert find_cell(foreign_images()[name], SPEC) is None


@pytest.mark.parametrize("shape", [(1, 1, 3), (240, 320), (0, 5, 3)])
def test_degenerate_arrays_have_no_cell(shape):
    assert find_cell(np.zeros(shape, np.uint8), SPEC) is None


def test_two_cells_of_like_size_are_both_found():
    _, rgb, _ = _examples()[0]
    frame = np.full((240, 640, 3), (230, 180, 190), np.uint8)
    frame[:, :320] = rgb
    frame[:, 320:] = rgb  # the same cell twice
    one, two = find_cells(frame, SPEC, REFERENCE_UM_PER_PX)
    assert sorted([one[0] < 320, two[0] < 320]) == [False, True]
    assert (one[2] - one[0]) == pytest.approx(two[2] - two[0], abs=2)
    assert find_cell(frame, SPEC, REFERENCE_UM_PER_PX) == one


def test_the_window_is_cut_at_full_resolution_with_black_beyond_the_edges():
    rgb = np.full((240, 320, 3), 200, np.uint8)
    window = cut_window(rgb, (0, 0, 20, 20), SPEC, (112, 112))  # the cell at the corner
    assert window.shape == (112, 112, 3) and window.dtype == np.uint8
    # The window is 112 px centred on (10, 10): 46 px lie left of and above the frame.
    assert window[:45, :].max() == 0 and window[:, :45].max() == 0
    assert (window[47:, 47:] == 200).all()
    inside = cut_window(rgb, (100, 100, 140, 140), SPEC, (96, 96))
    assert inside.shape == (96, 96, 3) and (inside == 200).all()
    # A 640x480 frame gets a 224 px window: the same content as 112 px at 320x240.
    gradient = np.broadcast_to(np.arange(320, dtype=np.uint8)[None, :, None], (240, 320, 3))
    big = cv2.resize(np.ascontiguousarray(gradient), (640, 480), interpolation=cv2.INTER_LINEAR)
    small_window = cut_window(gradient, (100, 80, 160, 140), SPEC, (96, 96)).astype(int)
    big_window = cut_window(big, (200, 160, 320, 280), SPEC, (96, 96)).astype(int)
    assert np.abs(small_window - big_window).max() <= 2


def test_a_window_map_is_placed_back_where_the_window_was_cut():
    frame = np.zeros((240, 320, 3), np.uint8)
    box = (0, 100, 40, 140)  # window: 112 px centred on (20, 120), x from -36 to 76
    assert window_rect(box, 320, SPEC) == (-36, 64, 112)
    placed = place_in_frame(np.ones((6, 6)), box, frame.shape, SPEC)
    assert placed.shape == (240, 320)
    assert (placed[64:176, 0:76] == 1).all()
    assert placed.sum() == 112 * 76
    # A 640x480 frame: the same window, twice the pixels.
    assert window_rect((0, 200, 80, 280), 640, SPEC) == (-72, 128, 224)


def test_prepare_image_crops_the_cell_or_falls_back_to_the_whole_frame():
    _, rgb, truths = _examples()[0]
    inputs, box = prepare_image(rgb, (96, 96), CROP)
    assert inputs.shape == (96, 96, 3) and inputs.dtype == np.float32
    assert 0.0 <= inputs.min() and inputs.max() <= 1.0
    assert box is not None and _centre_inside(box, truths[0])
    np.testing.assert_allclose(
        inputs, cut_window(rgb, box, SPEC, (96, 96)).astype(np.float32) / 255, atol=1e-6
    )

    blank = foreign_images()["flat-white"]
    inputs, box = prepare_image(blank, (96, 96), CROP)
    assert box is None
    np.testing.assert_allclose(inputs, to_model_input(blank, (96, 96), CROP).numpy(), atol=1e-6)

    whole, box = prepare_image(rgb, (64, 64), Preprocessing(antialias=True))
    assert box is None
    np.testing.assert_allclose(
        whole, to_model_input(rgb, (64, 64), Preprocessing(antialias=True)).numpy(), atol=1e-6
    )


def test_manifest_round_trips_with_and_without_localisation(tmp_path):
    directory, manifest, _ = publish_tiny_model(tmp_path)
    assert manifest.preprocessing.localisation is None
    assert read_manifest(directory).preprocessing.localisation is None
    # A v1-v3 manifest has no localisation key at all and still loads.
    raw = json.loads((directory / "manifest.json").read_text())
    raw["preprocessing"].pop("localisation", None)
    assert Manifest.model_validate(raw).preprocessing.localisation is None

    localised = manifest.model_copy(update={"preprocessing": CROP})
    write_manifest(directory, localised)
    reread = read_manifest(directory)
    assert reread.preprocessing.localisation == SPEC
    assert reread == localised
    with pytest.raises(ValueError, match="hue_min"):
        Localisation(hue_min=400)
