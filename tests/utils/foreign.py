"""Images that are clearly not stained blood smears, for the out-of-distribution flag."""

from __future__ import annotations

import cv2
import numpy as np


def foreign_images(width: int = 320, height: int = 240) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    images = {"noise": rng.integers(0, 256, (height, width, 3), dtype=np.uint8)}
    for name, colour in {
        "white": (255, 255, 255),
        "black": (0, 0, 0),
        "grey": (128, 128, 128),
        "red": (200, 40, 40),
        "smear-pink": (230, 180, 190),
    }.items():
        images[f"flat-{name}"] = np.full((height, width, 3), colour, np.uint8)
    squares = (np.indices((height, width)) // 20).sum(axis=0) % 2 * 255
    images["checkerboard"] = np.repeat(squares.astype(np.uint8)[:, :, None], 3, axis=2)
    text = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(text, "Lorem ipsum", (10, 90), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3)
    cv2.putText(text, "dolor sit amet", (10, 160), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 90), 2)
    images["text"] = text
    return images
