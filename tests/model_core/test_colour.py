"""White balance by the background: a camera's cast and exposure are taken out, the data
set's own smears are left as they are, and a frame with no glass is left alone and says so."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from model_core.inputs.colour import (
    background_colour,
    red_cells_stain,
    stain_familiar,
    white_balance,
)
from model_core.store.manifest import StainRange, WhiteBalance
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


# The stain as the red cells show it, and whether it lies in the training frames' range.
RANGE = StainRange(hue=(-25.0, 7.0), saturation=(22.0, 47.0), quantiles=(1, 99), measured_on="")


def _stain(rgb: np.ndarray) -> tuple[float, float] | None:
    return red_cells_stain(white_balance(rgb, SPEC)[0])


@pytest.mark.parametrize(
    ("shift", "hue", "saturation"),
    [
        ("stain hue +6", 5.0, 1.03),
        ("stain hue -6", -5.0, 1.0),
        ("stain saturation x0.75", 0.0, 0.78),
        ("stain saturation x1.25", 0.0, 1.25),
        ("exposure x0.8", 0.0, 1.0),
        ("blue cast (R x0.9, B x1.1)", 0.0, 1.0),
    ],
)
def test_the_red_cells_read_the_stain_and_not_the_camera(smears, shift, hue, saturation):
    for smear in smears:
        original = _rgb(smear.path)
        before, after = _stain(original), _stain(SHIFTS[shift][1](original))
        assert before is not None and after is not None, smear.path.name
        # one smear's reading moves by a few units besides (its window takes other pixels)
        assert abs(after[0] - before[0] - hue) <= 4, (smear.path.name, before, after)
        assert abs(after[1] / before[1] - saturation) <= 0.12, (smear.path.name, before, after)


def test_the_bundled_smears_are_familiar_and_a_strong_restain_is_not(smears):
    turned_verdicts = []
    for smear in smears:
        balanced = white_balance(_rgb(smear.path), SPEC)[0]
        assert stain_familiar(balanced, RANGE), smear.path.name
        hsv = cv2.cvtColor(balanced, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(int) + 30) % 180).astype(np.uint8)
        turned_verdicts.append(stain_familiar(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), RANGE))
        pale = cv2.cvtColor(balanced, cv2.COLOR_RGB2HSV)
        pale[..., 1] = (pale[..., 1] * 0.4).astype(np.uint8)
        assert stain_familiar(cv2.cvtColor(pale, cv2.COLOR_HSV2RGB), RANGE) is False
    # turned by 30 units: never familiar; unfamiliar where the red cells are still found
    # (a turn past the reading's window leaves them unread: None)
    assert True not in turned_verdicts and turned_verdicts.count(False) >= 6


@pytest.mark.parametrize(
    "image",
    [
        np.full((120, 120, 3), (120, 40, 160), np.uint8),  # all nucleus-violet
        np.full((120, 120, 3), 200, np.uint8),  # grey, nothing stained
    ],
)
def test_without_red_cells_the_stain_is_not_read(image):
    assert red_cells_stain(image) is None
    assert stain_familiar(image, RANGE) is None
