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

from model_core.store.manifest import WhiteBalance

_STATISTICS_WIDTH = 80  # pixels across the copy the background is measured on


def background_colour(rgb: np.ndarray, spec: WhiteBalance) -> np.ndarray | None:
    """The median RGB of the brightest `spec.bright_fraction` of pixels, float [3], or None
    when it does not look like glass (darker than `spec.min_level`, or its channels further
    apart than `spec.max_chroma` of its brightest)."""
    step = max(1, rgb.shape[1] // _STATISTICS_WIDTH)
    pixels = rgb[::step, ::step].reshape(-1, 3)
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
