"""`python -m training measure-stain`: the data set's stain, as its red cells show it.

Reads every fourth TRAIN frame (the 320x240 copies the models learn from; never TEST or
TEST_SIMPLE), white-balanced as a model with the balance sees it, and measures its red
cells' median chroma angle and length (`model_core.inputs.colour.read_stain`). Prints the
quantiles that `TRAIN_STAIN` in training/pipeline/config.py records. The data set holds two
stain batches (originals 0-180 read about 36 degrees, 180-410 about 15), so the spread is
wide: 2.5th-97.5th percentile -6 to 41 degrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from model_core.inputs.colour import _bright, _sample, read_stain, white_balance
from model_core.store.manifest import StainNormalisation, WhiteBalance
from training.pipeline.config import TRAIN_BACKGROUND_RGB

QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
EVERY = 4


def stain_readings(paths: list[Path], balance: WhiteBalance | None) -> np.ndarray:
    """(hue, saturation) [N, 2] of the red cells of each image that has them."""
    probe = StainNormalisation.model_validate({"hue": [-8.0, -8.0], "saturation": [30, 30]})
    readings = []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        if balance is not None:
            rgb, _ = white_balance(rgb, balance)
        pixels = _sample(rgb)
        glass = _bright(pixels, balance.bright_fraction if balance else probe.GLASS)
        reading = read_stain(pixels, glass, probe)
        if reading is not None:
            readings.append((reading.hue, reading.saturation))
    return np.asarray(readings, np.float64).reshape(-1, 2)


def measure_stain(data_dir: Path) -> dict:
    """The quantiles of the TRAIN frames' red-cell readings, white-balanced."""
    balance = WhiteBalance.model_validate({"reference_rgb": TRAIN_BACKGROUND_RGB})
    paths = sorted((Path(data_dir) / "images" / "TRAIN").glob("*/*.jpeg"))[::EVERY]
    readings = stain_readings(paths, balance)
    return {
        "frames": len(paths),
        "read": len(readings),
        "hue": {q: float(np.quantile(readings[:, 0], q)) for q in QUANTILES},
        "saturation": {q: float(np.quantile(readings[:, 1], q)) for q in QUANTILES},
    }
