"""White balance by the background: a camera's cast and exposure are taken out, the data
set's own smears are left as they are, and a frame with no glass is left alone and says so.
The stain by the red cells: a hue turn or saturation change is read and undone, a stain
within the range is left alone, and an image with no red cells says so."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_core.inputs.colour import (
    ColourFacts,
    StainReading,
    _bright,
    _sample,
    background_colour,
    normalise,
    read_stain,
    white_balance,
)
from model_core.store.manifest import StainNormalisation, WhiteBalance
from training.pipeline.config import TRAIN_BACKGROUND_RGB
from training.studies.colour_shifts import SHIFTS

SPEC = WhiteBalance.model_validate({"reference_rgb": TRAIN_BACKGROUND_RGB})


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize(
    "shift",
    ["exposure x0.8", "blue cast (R x0.9, B x1.1)", "warm cast (R x1.1, B x0.9)"],
)
def test_a_camera_shift_is_undone(smears, shift):
    for smear in smears:
        original = _rgb(smear.path)
        balanced_original, found = white_balance(original, SPEC)
        assert found
        balanced_shifted, found = white_balance(SHIFTS[shift][1](original), SPEC)
        assert found
        gap = np.abs(balanced_shifted.astype(int) - balanced_original.astype(int))
        # the cells' pixels come back within a few levels (clipping aside)
        assert np.median(gap) <= 3, (smear.path.name, shift)


def test_the_background_is_the_glass_and_becomes_the_reference(smears):
    for smear in smears:
        colour = background_colour(_rgb(smear.path), SPEC)
        assert colour is not None and colour.min() > 180 and np.ptp(colour) < 12
        balanced, found = white_balance(_rgb(smear.path), SPEC)
        assert found
        after = background_colour(balanced, SPEC)
        assert after is not None and np.all(np.abs(after - TRAIN_BACKGROUND_RGB) <= 3)


@pytest.mark.parametrize(
    "image",
    [
        np.full((120, 120, 3), (120, 40, 160), np.uint8),  # all stain, no glass
        np.full((120, 120, 3), 30, np.uint8),  # dark
        np.zeros((120, 120, 3), np.uint8),
    ],
)
def test_no_glass_leaves_the_image_as_it_came(image):
    balanced, found = white_balance(image, SPEC)
    assert not found and balanced is image


# The stain: read from the red cells, turned and scaled back into the data set's range.
STAIN = StainNormalisation.model_validate(
    {"angle_deg": [26.0, 26.0], "chroma": [15.6, 15.6], "max_turn_deg": 60, "max_gain": 2}
)
WIDE = StainNormalisation.model_validate({"angle_deg": [-60.0, 100.0], "chroma": [1.0, 200.0]})


def _reading(rgb: np.ndarray) -> StainReading | None:
    balanced, _ = white_balance(rgb, SPEC)
    pixels = _sample(balanced)
    return read_stain(pixels, _bright(pixels, SPEC.bright_fraction), STAIN)


@pytest.mark.parametrize(
    ("shift", "turn", "gain"),
    [
        ("stain hue +6", 10.0, 1.0),
        ("stain hue -6", -10.0, 1.0),
        ("stain saturation x0.75", 0.0, 0.78),
        ("stain saturation x1.25", 0.0, 1.27),
    ],
)
def test_the_red_cells_read_a_stain_shift(smears, shift, turn, gain):
    for smear in smears:
        original = _rgb(smear.path)
        before, after = _reading(original), _reading(SHIFTS[shift][1](original))
        assert before is not None and after is not None
        assert 0.2 <= before.share <= 0.7  # red cells cover a good part of a field
        # OpenCV's hue is hexagonal: 6 of its units turn the chroma by 10 +- 9 degrees
        assert abs(after.angle_deg - before.angle_deg - turn) <= 9, smear.path.name
        # HSV turns are hexagonal: a turn changes the chroma by a few percent too
        assert abs(after.chroma / before.chroma - gain) <= 0.1, smear.path.name


@pytest.mark.parametrize(
    "shift",
    ["unchanged", "exposure x0.8", "blue cast (R x0.9, B x1.1)", "stain hue +6", "stain hue -6"]
    + ["stain saturation x0.75", "stain saturation x1.25"],
)
def test_a_normalised_stain_lands_on_the_reference(smears, shift):
    for smear in smears:
        shifted_rgb = SHIFTS[shift][1](_rgb(smear.path))
        normalised, facts = normalise(shifted_rgb, SPEC, STAIN)
        assert facts == ColourFacts(white_balanced=True, stain_normalised=True)
        pixels = _sample(normalised)
        reading = read_stain(pixels, _bright(pixels, SPEC.bright_fraction), STAIN)
        assert reading is not None
        assert abs(reading.angle_deg - 26.0) <= 6, (smear.path.name, shift)
        assert abs(reading.chroma / 15.6 - 1) <= 0.1, (smear.path.name, shift)


def test_a_stain_within_the_range_is_left_as_it_is(smears):
    for smear in smears:
        balanced, _ = white_balance(_rgb(smear.path), SPEC)
        normalised, facts = normalise(_rgb(smear.path), SPEC, WIDE)
        assert facts.stain_normalised
        assert np.array_equal(normalised, balanced)  # the balance alone: no turn, no gain


@pytest.mark.parametrize(
    "image",
    [
        np.full((120, 120, 3), (120, 40, 160), np.uint8),  # all nucleus-violet
        np.full((120, 120, 3), 200, np.uint8),  # grey glass, nothing stained
    ],
)
def test_no_red_cells_leave_the_stain_as_it_came(image):
    normalised, facts = normalise(image, None, STAIN)
    assert facts == ColourFacts(white_balanced=None, stain_normalised=False)
    assert normalised is image


def test_a_crop_of_one_cell_is_not_read_as_a_stain(smears):
    # a tight crop around the white cell: mostly nucleus and cytoplasm, few red cells
    for smear in smears:
        x0, y0, x1, y1 = smear.wbc_boxes[0]
        crop = np.ascontiguousarray(_rgb(smear.path)[y0:y1, x0:x1])
        normalised, facts = normalise(crop, None, STAIN)
        if facts.stain_normalised:  # enough red cells at the crop's corners: a fair reading
            reading = _reading(crop)
            assert reading is not None and -10 <= reading.angle_deg <= 60, smear.path.name
