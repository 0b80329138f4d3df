"""White balance by the background: a camera's cast and exposure are taken out, the data
set's own smears are left as they are, and a frame with no glass is left alone and says so."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_core.inputs.colour import background_colour, white_balance
from model_core.store.manifest import WhiteBalance
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
