"""`python -m training measure-stain`: the stain colour of the data set's train frames, as
their red cells show it, written into an entry's manifest (`preprocessing.stain_range`) so
that serving flags images stained unlike any of them (`stain_unfamiliar`).

Reads every fourth TRAIN frame (the 320x240 copies the models learn from; never TEST or
TEST_SIMPLE), white-balanced as the entry balances, and takes the red cells' median hue and
saturation of each (`model_core.inputs.colour.red_cells_stain`); the range is their 1st to
99th percentiles. The data set holds two stain batches (originals 0-180 and 180-410 differ
by about 12 hue units), so the range is wide: a stain shift that stays within it is not
flagged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from model_core.inputs.colour import red_cells_stain
from model_core.inputs.transform import normalise_colour
from model_core.store.entries import read_manifest, write_manifest
from model_core.store.manifest import Manifest, StainRange
from training.pipeline.data import DataError
from training.studies.model_card import write_model_card

EVERY, LEAST_FRAMES = 4, 20
QUANTILES = (1.0, 99.0)


def stain_readings(paths: list[Path], manifest: Manifest) -> np.ndarray:
    """(hue, saturation) [N, 2] of each frame that has enough red cells to read."""
    readings = []
    for path in paths:
        rgb, _ = normalise_colour(
            np.asarray(Image.open(path).convert("RGB")), manifest.preprocessing
        )
        reading = red_cells_stain(rgb)
        if reading is not None:
            readings.append(reading)
    return np.asarray(readings, np.float64).reshape(-1, 2)


def measure_stain_range(
    entry: Path, data_dir: Path, every: int = EVERY, least: int = LEAST_FRAMES
) -> Manifest:
    """Measure the stain range of every `every`th TRAIN frame for `entry` (at least `least`
    read) and write it into its manifest."""
    manifest = read_manifest(entry)
    paths = sorted((Path(data_dir) / "images" / "TRAIN").glob("*/*.jpeg"))[::every]
    readings = stain_readings(paths, manifest)
    if len(readings) < least:
        raise DataError(f"too few TRAIN frames with red cells under {data_dir} to measure")
    low, high = np.percentile(readings, QUANTILES, axis=0)
    stain_range = StainRange(
        hue=(round(float(low[0]), 2), round(float(high[0]), 2)),
        saturation=(round(float(low[1]), 2), round(float(high[1]), 2)),
        quantiles=QUANTILES,
        measured_on=f"the {len(readings)} of {len(paths)} TRAIN frames (every {every}th) "
        f"whose red cells could be read, {datetime.now(UTC).date().isoformat()}",
    )
    manifest = manifest.model_copy(
        update={
            "preprocessing": manifest.preprocessing.model_copy(update={"stain_range": stain_range})
        }
    )
    write_manifest(entry, manifest)
    write_model_card(entry)
    return manifest
