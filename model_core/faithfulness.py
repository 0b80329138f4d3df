"""Masking a model input by its heat map: the evidence checks of an explanation."""

from __future__ import annotations

import cv2
import numpy as np

KEEP_FRACTION = 0.2


def heat_at_input(heatmap: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The [h, w] map resized to the model input (height, width)."""
    height, width = input_size
    return cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def top_mask(heat: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the `fraction` of pixels with the most heat (ties broken by order)."""
    count = int(round(fraction * heat.size))
    mask = np.zeros(heat.size, bool)
    mask[np.argsort(-heat, axis=None, kind="stable")[:count]] = True
    return mask.reshape(heat.shape)


def keep_and_remove(
    model_input: np.ndarray, heat: np.ndarray, fraction: float = KEEP_FRACTION
) -> np.ndarray:
    """Two inputs [2, h, w, 3]: only the hottest `fraction` kept (the rest blurred away), and
    the hottest `fraction` removed (blurred), the rest kept."""
    blurred = blur(model_input)
    hot = top_mask(heat, fraction)[:, :, None]
    return np.stack([np.where(hot, model_input, blurred), np.where(hot, blurred, model_input)])


def blur(model_input: np.ndarray) -> np.ndarray:
    """A heavily blurred copy: the 'no information' reference of RISE's insertion metric."""
    side = max(3, (min(model_input.shape[:2]) // 8) | 1)
    return cv2.GaussianBlur(model_input, (side, side), sigmaX=side / 3)
