"""Score heat maps against the white cell's box: pointing game, energy share, and the
deletion/insertion curves, for every method the service offers plus two baselines.

It runs the model core's explainers (model_core.explainers), the ones /explain runs, on
the saved model, so the numbers describe exactly what /explain returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model_core.explainers import METHODS
from model_core.faithfulness import blur, heat_at_input
from model_core.inputs.localisation import Box, cut_window, place_in_frame
from model_core.inputs.transform import prepare_image
from model_core.rendering import upsample
from model_core.runtime import ModelRuntime
from training.pipeline.data import LabelledImages, list_split, load_images

TOLERANCE_PX = 15  # Zhang et al. 2018, "Top-down neural attention by excitation backprop"
CURVE_STEPS = 32
BASELINES = ("random", "centre", "cell box")
"""Maps that know nothing of the model: noise, a centred Gaussian, and (for a model with a
localiser) a Gaussian filling the localiser's cell box. An explanation is informative only
where it beats them, the cell box above all: the crop already points at the cell."""


@dataclass
class ScoredImages:
    """Images with their WBC boxes (xmin, ymin, xmax, ymax in the image's pixels)."""

    data: LabelledImages
    boxes: list[list[list[float]]]


def test_simple_with_boxes(data_dir: Path, class_names: list[str]) -> ScoredImages:
    data = load_images(*list_split(Path(data_dir) / "images" / "TEST_SIMPLE", class_names))
    table = json.loads((Path(data_dir) / "test_simple_wbc_boxes.json").read_text())["images"]
    boxes = [table[str(path.relative_to(data_dir))]["wbc_boxes_xyxy"] for path in data.paths]
    return ScoredImages(data, boxes)


def pointing_hit(heat: np.ndarray, boxes: list[list[float]], tolerance: float = 0) -> bool:
    """Pointing game (Zhang et al. 2018): is the map's maximum inside a (grown) box?"""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return any(
        x0 - tolerance <= x <= x1 + tolerance and y0 - tolerance <= y <= y1 + tolerance
        for x0, y0, x1, y1 in boxes
    )


def energy_share(heat: np.ndarray, boxes: list[list[float]]) -> float:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM): heat mass inside the boxes."""
    inside = np.zeros(heat.shape, bool)
    for x0, y0, x1, y1 in boxes:
        inside[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
    total = float(heat.sum())
    return float(heat[inside].sum()) / total if total > 0 else 0.0


def deletion_insertion(
    runtime: ModelRuntime,
    model_input: np.ndarray,
    heat: np.ndarray,
    target: int,
    steps: int = CURVE_STEPS,
) -> tuple[float, float]:
    """Petsiuk et al. 2018 (RISE): the target probability as the hottest pixels are deleted
    (set to zero) or inserted (onto a blurred copy); normalised area under each curve."""
    order = np.argsort(-heat, axis=None, kind="stable")
    counts = np.linspace(0, heat.size, steps + 1).astype(int)
    flat_input, flat_blur = model_input.reshape(-1, 3), blur(model_input).reshape(-1, 3)
    deleted, inserted = [], []
    for count in counts:
        gone = order[:count]
        deletion = flat_input.copy()
        deletion[gone] = 0.0
        insertion = flat_blur.copy()
        insertion[gone] = flat_input[gone]
        deleted.append(deletion.reshape(model_input.shape))
        inserted.append(insertion.reshape(model_input.shape))
    probabilities = runtime.predict(np.stack(deleted + inserted))[:, target]
    curve_x = counts / heat.size
    return (
        float(np.trapezoid(probabilities[: steps + 1], curve_x)),
        float(np.trapezoid(probabilities[steps + 1 :], curve_x)),
    )


def baseline_map(
    name: str, shape: tuple[int, int], rng: np.random.Generator, cell_box: Box | None = None
) -> np.ndarray:
    """A baseline's map over a frame of `shape`; "cell box" without a box is "centre"."""
    if name == "random":
        return rng.random(shape).astype(np.float32)
    height, width = shape
    x0, y0, x1, y1 = cell_box if name == "cell box" and cell_box else (0, 0, width, height)
    yy, xx = np.mgrid[:height, :width]
    gaussian = np.exp(
        -(
            ((yy - (y0 + y1 - 1) / 2) / ((y1 - y0) / 4)) ** 2
            + ((xx - (x0 + x1 - 1) / 2) / ((x1 - x0) / 4)) ** 2
        )
        / 2
    )
    if name == "cell box" and cell_box:
        gaussian[(yy < y0) | (yy >= y1) | (xx < x0) | (xx >= x1)] = 0.0
    return gaussian.astype(np.float32)


def model_inputs(runtime: ModelRuntime, images: np.ndarray) -> tuple[np.ndarray, list]:
    """Each frame through the entry's own preprocessing (the cell's window where the manifest
    has a localiser): model inputs [N, h, w, 3] and the cell boxes (None: whole frame)."""
    prepared = [
        prepare_image(image, runtime.manifest.input_size, runtime.manifest.preprocessing)
        for image in images
    ]
    return np.stack([inputs for inputs, _ in prepared]), [box for _, box in prepared]


def frame_map(
    runtime: ModelRuntime, low_res: np.ndarray, frame_shape: tuple[int, ...], cell_box: Box | None
) -> np.ndarray:
    """A map over the model input, at the full frame [H, W] in 0..1: upsampled, and for a
    cell window put back where the window was cut from (zero elsewhere)."""
    localisation = runtime.manifest.preprocessing.localisation
    if cell_box is None or localisation is None:
        return upsample(low_res, frame_shape[1], frame_shape[0])
    height, width = runtime.manifest.input_size
    return place_in_frame(upsample(low_res, width, height), cell_box, frame_shape, localisation)


def input_map(runtime: ModelRuntime, full: np.ndarray, cell_box: Box | None) -> np.ndarray:
    """A full-frame map at the model input: the window's part of it for a cell window."""
    localisation = runtime.manifest.preprocessing.localisation
    if cell_box is None or localisation is None:
        return heat_at_input(full, runtime.manifest.input_size)
    return cut_window(full.astype(np.float32), cell_box, localisation, runtime.manifest.input_size)


def method_maps(
    runtime: ModelRuntime,
    inputs: np.ndarray,
    targets: np.ndarray,
    method: str,
    layer: str | None,
) -> np.ndarray:
    """Low-resolution maps [N, h, w] of one method, explaining `targets` at `layer` (None:
    the method's own, e.g. CAM's features layer)."""
    explainer = METHODS[method]
    gradients = runtime.gradients(
        inputs, targets.astype(np.int32), explainer.layer_for(layer, runtime)
    )
    return explainer.heatmaps(gradients, gradients.targets, runtime)


def score_maps(
    runtime: ModelRuntime,
    scored: ScoredImages,
    inputs: np.ndarray,
    low_res_maps: list[np.ndarray] | None,
    baseline: str | None = None,
    seed: int = 0,
    cell_boxes: list | None = None,
) -> dict:
    """All metrics for one method's maps (or a baseline's), averaged over the images: the
    pointing games and energy at the full frame, deletion and insertion at the model input."""
    rng = np.random.default_rng(seed)
    cell_boxes = cell_boxes or [None] * len(scored.data)
    rows = []
    for index, image in enumerate(scored.data.images):
        if baseline is None:
            assert low_res_maps is not None
            full = frame_map(runtime, low_res_maps[index], image.shape, cell_boxes[index])
        else:
            full = baseline_map(baseline, image.shape[:2], rng, cell_boxes[index])
        boxes, target = scored.boxes[index], int(scored.data.labels[index])
        deletion, insertion = deletion_insertion(
            runtime, inputs[index], input_map(runtime, full, cell_boxes[index]), target
        )
        rows.append(
            (
                pointing_hit(full, boxes),
                pointing_hit(full, boxes, TOLERANCE_PX),
                energy_share(full, boxes),
                deletion,
                insertion,
            )
        )
    columns = np.array(rows, dtype=np.float64).mean(axis=0)
    return dict(
        zip(
            (
                "pointing_game",
                f"pointing_game_{TOLERANCE_PX}px",
                "energy_pointing_game",
                "deletion_auc",
                "insertion_auc",
            ),
            map(float, columns),
            strict=True,
        )
    )


def grid_png(
    runtime: ModelRuntime,
    scored: ScoredImages,
    inputs: np.ndarray,
    maps: dict[str, np.ndarray],
    path: Path,
    cell_boxes: list | None = None,
) -> Path:
    """One row per class (its first image), one column per method: full-frame overlays with
    the annotated box (green) and the localiser's cell box (blue)."""
    cell_boxes = cell_boxes or [None] * len(scored.data)
    import cv2

    from model_core.rendering import overlay

    names = runtime.manifest.class_names
    rows = []
    for label in range(len(names)):
        index = int(np.flatnonzero(scored.data.labels == label)[0])
        image = scored.data.images[index]
        tiles = [image.copy()]
        for method_maps_ in maps.values():
            full = frame_map(runtime, method_maps_[index], image.shape, cell_boxes[index])
            tiles.append(overlay(image, full, "jet", 0.5, 0.0))
        for tile in tiles:
            for x0, y0, x1, y1 in scored.boxes[index]:
                cv2.rectangle(tile, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0), 2)
            if cell_boxes[index] is not None:
                x0, y0, x1, y1 = cell_boxes[index]
                cv2.rectangle(tile, (x0, y0), (x1, y1), (0, 0, 255), 1)
        rows.append(np.concatenate(tiles, axis=1))
    header = np.full((24, rows[0].shape[1], 3), 255, np.uint8)
    for column, title in enumerate(["image (WBC box)", *maps]):
        cv2.putText(
            header,
            title,
            (column * scored.data.images.shape[2] + 6, 17),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    labels = [np.full((rows[0].shape[0], 110, 3), 255, np.uint8) for _ in rows]
    for label_tile, name in zip(labels, names, strict=True):
        cv2.putText(
            label_tile,
            name,
            (4, label_tile.shape[0] // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    body = np.concatenate(
        [np.concatenate([t, r], axis=1) for t, r in zip(labels, rows, strict=True)]
    )
    corner = np.full((24, 110, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([np.concatenate([corner, header], axis=1), body])).save(path)
    return path
