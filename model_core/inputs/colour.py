"""Background white balance: scale each channel so the image's glass matches a reference.

The glass between the cells is the one thing in a smear whose colour the camera alone
decides (exposure, white balance), so matching it to the data set's removes the camera's
part of a colour shift and leaves the stain's. The glass is estimated as the median colour
of the brightest share of pixels (by the sum of the channels) on a downsampled copy; an
image where that colour is not glass-like (too dark, too coloured, or needing gains beyond
the limit: a tight crop of one cell) is returned unchanged and said so."""

from __future__ import annotations

import cv2
import numpy as np

from model_core.store.manifest import StainRange, WhiteBalance

_STATISTICS_WIDTH = 80  # pixels across the copy the background is measured on
GLASS_FRACTION = 0.3
"""The brightest share of the sample taken as glass when the stain is read."""
RED_HUE, RED_WINDOW, MIN_SATURATION, MIN_RED_SHARE = -8.0, 25, 8, 0.1
"""Red cells, when the stain is read: pixels darker than the glass, at least MIN_SATURATION
saturated (OpenCV's HSV, 0-255), within RED_WINDOW hue units (0-180 scale) of their median,
which is sought from RED_HUE (pink, written -90..90 about red; a nucleus's violet is 35 or
more units away); fewer than MIN_RED_SHARE of the sample: no reading."""
READING_STEPS, SETTLED = 8, 0.25
"""The window is re-centred on the red cells' median hue until it moves by less than
SETTLED units (at most READING_STEPS times)."""


def _sample(rgb: np.ndarray) -> np.ndarray:
    """The pixels [N, 3] of a strided sample about _STATISTICS_WIDTH across: what the
    background and the stain are measured on."""
    step = max(1, rgb.shape[1] // _STATISTICS_WIDTH)
    return np.ascontiguousarray(rgb[::step, ::step].reshape(-1, 3))


def background_colour(rgb: np.ndarray, spec: WhiteBalance) -> np.ndarray | None:
    """The median RGB of the brightest `spec.bright_fraction` of pixels, float [3], or None
    when it does not look like glass (darker than `spec.min_level`, or its channels further
    apart than `spec.max_chroma` of its brightest)."""
    pixels = _sample(rgb)
    lightness = pixels.sum(axis=1, dtype=np.int32)
    keep = max(1, int(len(pixels) * spec.bright_fraction))
    threshold = np.partition(lightness, len(pixels) - keep)[len(pixels) - keep]
    colour = np.median(pixels[lightness >= threshold], axis=0)
    if (
        colour.max() < spec.min_level
        or colour.max() - colour.min() > spec.max_chroma * colour.max()
    ):
        return None
    return colour


def white_balance(rgb: np.ndarray, spec: WhiteBalance) -> tuple[np.ndarray, bool]:
    """RGB uint8 [H, W, 3] -> (the image with its background scaled to `spec.reference_rgb`,
    True), or (the image unchanged, False) where no background was found."""
    colour = background_colour(rgb, spec)
    if colour is None:
        return rgb, False
    gains = np.asarray(spec.reference_rgb, np.float64) / np.maximum(colour, 1.0)
    if gains.max() > spec.max_gain or gains.min() < 1.0 / spec.max_gain:
        return rgb, False
    table = np.clip(np.rint(np.arange(256)[:, None] * gains), 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(rgb), table.reshape(256, 1, 3)), True


def red_cells_stain(rgb: np.ndarray) -> tuple[float, float] | None:
    """The stain of an RGB uint8 smear (white-balanced first, where the model does) as its
    red cells show it: their median hue (OpenCV's units, -90..90 about red) and median
    saturation (0-255), or None when fewer than MIN_RED_SHARE of the pixels are red cells (a
    crop of one cell, a foreign image). On every 40th TRAIN frame a stain's hue turn of +6
    reads as +5 and -6 as -6 (spread 1.4 and 1.2), its saturation x0.75 / x1.25 as x0.77 /
    x1.28; colour casts and exposure x0.8, balanced first, move neither (spread under 1 and
    2%; exposure x1.2, which clips, 3 and 5%). The
    glass is the brightest GLASS_FRACTION of the sample by HSV value; the window's medians
    come from a histogram of the hues (whole units), so the reading costs a few tenths of a
    millisecond."""
    hsv = cv2.cvtColor(_sample(rgb).reshape(1, -1, 3), cv2.COLOR_RGB2HSV).reshape(-1, 3)
    count = len(hsv)
    value = hsv[:, 2]
    keep = max(1, int(count * GLASS_FRACTION))
    glass_level = np.partition(value, count - keep)[count - keep]
    stained = (value < glass_level) & (hsv[:, 1] >= MIN_SATURATION)
    hue = hsv[stained, 0].astype(np.int16)
    histogram = np.bincount(hue, minlength=180)[:180]
    least = max(1.0, MIN_RED_SHARE * count)
    centre = RED_HUE
    offsets = np.arange(-RED_WINDOW, RED_WINDOW + 1)
    window = offsets
    for _ in range(READING_STEPS):
        window = (round(centre) + offsets) % 180
        counts = histogram[window]
        total = int(counts.sum())
        if total < least:
            return None
        median = float(offsets[np.searchsorted(np.cumsum(counts), (total + 1) / 2)])
        step_hue = round(centre) + median - centre
        centre += step_hue
        if abs(step_hue) < SETTLED:
            break
    in_window = np.zeros(180, bool)
    in_window[window] = True
    saturation = float(np.median(hsv[stained, 1][in_window[hue]]))
    return float((centre + 90.0) % 180.0 - 90.0), saturation


def stain_familiar(rgb: np.ndarray, spec: StainRange) -> bool | None:
    """Whether the smear's red cells (`red_cells_stain`) lie within the data set's range;
    None when it has too few red cells to tell."""
    reading = red_cells_stain(rgb)
    if reading is None:
        return None
    hue, saturation = reading
    return bool(
        spec.hue[0] <= hue <= spec.hue[1] and spec.saturation[0] <= saturation <= spec.saturation[1]
    )
