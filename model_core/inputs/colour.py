"""Colour normalisation: the camera's part by the background, the stain's by the red cells.

**White balance.** The glass between the cells is the one thing in a smear whose colour the
camera alone decides (exposure, white balance), so matching it to the data set's removes the
camera's part of a colour shift and leaves the stain's. The glass is estimated as the median
colour of the brightest share of pixels (by the sum of the channels) on a strided sample; an
image where that colour is not glass-like (too dark, too coloured, or needing gains beyond
the limit: a tight crop of one cell) is left unbalanced and said so.

**Stain.** Red cells are in every smear, take the stain alike whatever the white cell's
type, and cover about a third of a field: their colour is the stain's ruler. The stain is
read in OpenCV's HSV (hue in 0-180 units, as a stain shift is usually described): the
median hue and saturation of the sample's non-glass, coloured pixels within `window` hue
units of the range's middle (pink, about -8 on the data set's balanced TRAIN frames; a
nucleus's violet, about 135, is far outside), the window re-centred on their median until
it settles. Where that reading lies beyond the data set's own range of readings, the whole
image's hue is turned and its saturation scaled (in HSV; value kept) to bring it to the
range's nearest edge: within the range nothing changes, as the model has seen such stains.
On the TRAIN frames a hue turn of +6 reads as +5 (spread 1.8) and camera shifts, balanced
first, read as none. Too few red-cell pixels, or a correction beyond the limits (a crop of
one cell): the stain is left as it is, and said so.

The balance is a table per channel; a stain correction adds one round trip through HSV with
a table on hue and saturation. Deterministic, numpy and OpenCV only."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model_core.store.manifest import StainNormalisation, WhiteBalance

_STATISTICS_WIDTH = 80  # pixels across the sample the background and stain are measured on
READING_STEPS, SETTLED = 8, 0.25
"""The red cells' window is re-centred on their median hue until it moves by less than
SETTLED (at most READING_STEPS times): a window left where it started pulls the reading
towards the range's middle."""


@dataclass(frozen=True)
class ColourFacts:
    """What colour normalisation did to an image."""

    white_balanced: bool | None = None
    """False: the manifest asks for the balance and no background was found; None: it
    does not ask."""
    stain_normalised: bool | None = None
    """False: the manifest asks for the stain's normalisation and too few red cells were
    found to measure it by; None: it does not ask."""


@dataclass(frozen=True)
class StainReading:
    """The red cells' median hue (OpenCV units, -90..90 about red) and saturation (0-255)
    in a sample, and the share of the sample's pixels they were read on."""

    hue: float
    saturation: float
    share: float


def _sample(rgb: np.ndarray) -> np.ndarray:
    """Pixels [N, 3] (float32) of a strided sample about _STATISTICS_WIDTH across."""
    step = max(1, rgb.shape[1] // _STATISTICS_WIDTH)
    return rgb[::step, ::step].reshape(-1, 3).astype(np.float32)


def _bright(pixels: np.ndarray, fraction: float) -> np.ndarray:
    """Mask [N] of the brightest `fraction` of `pixels` by the sum of their channels."""
    lightness = pixels.sum(axis=1)
    keep = max(1, int(len(pixels) * fraction))
    threshold = np.partition(lightness, len(pixels) - keep)[len(pixels) - keep]
    return lightness >= threshold


def _background(pixels: np.ndarray, bright: np.ndarray, spec: WhiteBalance) -> np.ndarray | None:
    """The median colour of the `bright` pixels, float [3], or None when it does not look
    like glass (darker than `spec.min_level`, or its channels further apart than
    `spec.max_chroma` of its brightest)."""
    colour = np.median(pixels[bright], axis=0)
    if (
        colour.max() < spec.min_level
        or colour.max() - colour.min() > spec.max_chroma * colour.max()
    ):
        return None
    return colour


def background_colour(rgb: np.ndarray, spec: WhiteBalance) -> np.ndarray | None:
    """The median RGB of the brightest `spec.bright_fraction` of pixels, float [3], or None
    when it does not look like glass."""
    pixels = _sample(rgb)
    return _background(pixels, _bright(pixels, spec.bright_fraction), spec)


def _balance_gains(pixels: np.ndarray, bright: np.ndarray, spec: WhiteBalance) -> np.ndarray | None:
    """Channel gains [3] that bring the background to `spec.reference_rgb`, or None."""
    colour = _background(pixels, bright, spec)
    if colour is None:
        return None
    gains = np.asarray(spec.reference_rgb, np.float64) / np.maximum(colour, 1.0)
    if gains.max() > spec.max_gain or gains.min() < 1.0 / spec.max_gain:
        return None
    return gains


def read_stain(
    pixels: np.ndarray, glass: np.ndarray, spec: StainNormalisation
) -> StainReading | None:
    """The red cells' hue and saturation among `pixels` [N, 3] (RGB, float 0..255; not
    `glass`), or None when fewer than `spec.min_share` of the pixels are red-cell coloured."""
    coloured = np.clip(np.rint(pixels[~glass]), 0, 255).astype(np.uint8).reshape(1, -1, 3)
    hsv = cv2.cvtColor(coloured, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float32)
    stained = hsv[:, 1] >= spec.min_saturation
    hue, saturation = hsv[stained, 0], hsv[stained, 1]
    centre, least = sum(spec.hue) / 2, max(1.0, spec.min_share * len(pixels))
    for _ in range(READING_STEPS):
        offset = np.mod(hue - centre + 90.0, 180.0) - 90.0
        red = np.abs(offset) <= spec.window
        if np.count_nonzero(red) < least:
            return None
        step = float(np.median(offset[red]))
        centre += step
        if abs(step) < SETTLED:
            break
    centre = (centre + 90.0) % 180.0 - 90.0
    return StainReading(
        centre, float(np.median(saturation[red])), np.count_nonzero(red) / len(pixels)
    )


def stain_correction(reading: StainReading, spec: StainNormalisation) -> tuple[float, float] | None:
    """(hue turn, saturation gain) that bring `reading` to the nearest edge of the data set's
    range ((0, 1) within it), or None beyond `spec.max_turn` or `spec.max_gain`."""
    turn = float(np.clip(reading.hue, *spec.hue)) - reading.hue
    gain = float(np.clip(reading.saturation, *spec.saturation)) / max(reading.saturation, 1.0)
    if abs(turn) > spec.max_turn or not 1 / spec.max_gain <= gain <= spec.max_gain:
        return None
    return turn, gain


def _restain(rgb: np.ndarray, turn: float, gain: float) -> np.ndarray:
    """`rgb` with its hue turned by `turn` and its saturation scaled by `gain` (HSV)."""
    levels = np.arange(256, dtype=np.float64)
    hue = np.where(levels < 180, np.mod(np.rint(levels + turn), 180), levels)
    table = np.stack([hue, np.clip(np.rint(levels * gain), 0, 255), levels], axis=1)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv = cv2.LUT(hsv, table.astype(np.uint8).reshape(256, 1, 3))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def normalise(
    rgb: np.ndarray, balance: WhiteBalance | None, stain: StainNormalisation | None
) -> tuple[np.ndarray, ColourFacts]:
    """RGB uint8 [H, W, 3] -> the image white-balanced by its background (when `balance`)
    and its stain brought into the data set's range by its red cells (when `stain`), and
    what was done."""
    if balance is None and stain is None:
        return rgb, ColourFacts()
    rgb = np.ascontiguousarray(rgb)
    pixels = _sample(rgb)
    bright = _bright(pixels, balance.bright_fraction if balance else StainNormalisation.GLASS)
    balanced = stained = None
    if balance is not None:
        gains = _balance_gains(pixels, bright, balance)
        balanced = gains is not None
        if gains is not None:
            table = np.clip(np.rint(np.arange(256)[:, None] * gains), 0, 255).astype(np.uint8)
            rgb = cv2.LUT(rgb, table.reshape(256, 1, 3))
            pixels = pixels * gains.astype(np.float32)
    if stain is not None:
        reading = read_stain(pixels, bright, stain)
        correction = None if reading is None else stain_correction(reading, stain)
        stained = correction is not None
        if correction is not None and correction != (0.0, 1.0):
            rgb = _restain(rgb, *correction)
    return rgb, ColourFacts(balanced, stained)


def white_balance(rgb: np.ndarray, spec: WhiteBalance) -> tuple[np.ndarray, bool]:
    """RGB uint8 [H, W, 3] -> (the image with its background scaled to `spec.reference_rgb`,
    True), or (the image unchanged, False) where no background was found."""
    balanced, facts = normalise(rgb, spec, None)
    return balanced, bool(facts.white_balanced)
