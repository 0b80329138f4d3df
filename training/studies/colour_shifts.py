"""A fixed, documented set of colour shifts, as smears differ between labs and cameras.

Camera shifts (exposure, white balance) scale the RGB channels of the whole frame; stain
shifts (another stain batch or protocol) turn the hue or scale the saturation in OpenCV's
HSV (hue in 0-180 units). Every shift is applied to the whole uint8 frame before anything
else, as a user's image would arrive. The values differ from the issue's table on purpose:
the recipe is chosen on these, and checked on others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

ShiftKind = Literal["none", "camera", "stain"]


def _gains(red: float, green: float, blue: float) -> Callable[[np.ndarray], np.ndarray]:
    def shift(rgb: np.ndarray) -> np.ndarray:
        gains = np.array([red, green, blue], np.float32)
        return np.clip(np.rint(rgb.astype(np.float32) * gains), 0, 255).astype(np.uint8)

    return shift


def _hsv(hue: float = 0.0, saturation: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    def shift(rgb: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue, 180)
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        return cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)

    return shift


SHIFTS: dict[str, tuple[ShiftKind, Callable[[np.ndarray], np.ndarray]]] = {
    "unchanged": ("none", lambda rgb: rgb),
    "exposure x0.8": ("camera", _gains(0.8, 0.8, 0.8)),
    "exposure x1.2": ("camera", _gains(1.2, 1.2, 1.2)),
    "blue cast (R x0.9, B x1.1)": ("camera", _gains(0.9, 1.0, 1.1)),
    "warm cast (R x1.1, B x0.9)": ("camera", _gains(1.1, 1.0, 0.9)),
    "stain hue +6": ("stain", _hsv(hue=6)),
    "stain hue -6": ("stain", _hsv(hue=-6)),
    "stain saturation x0.75": ("stain", _hsv(saturation=0.75)),
    "stain saturation x1.25": ("stain", _hsv(saturation=1.25)),
}
"""Name -> (kind, the shift of an RGB uint8 frame)."""


def shifted(frames: np.ndarray | list[np.ndarray], name: str) -> list[np.ndarray]:
    """Every frame with the shift `name` applied."""
    _, shift = SHIFTS[name]
    return [shift(np.asarray(frame)) for frame in frames]
