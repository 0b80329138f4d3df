"""Measure the localiser alone: is the found box's centre inside the annotated WBC box, and
how well do the boxes overlap (IoU), on TEST_SIMPLE and the 640x480 originals."""

from __future__ import annotations

import csv
import json
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model_core.inputs.localisation import Box, find_cells
from model_core.store.manifest import MANIFEST_FILE, Localisation
from training.studies.model_card import write_model_card


@dataclass
class BoxedImage:
    """A frame on disk with its annotated WBC boxes ([x0, y0, x1, y1] in its pixels)."""

    path: Path
    boxes: list[list[float]]
    label: str


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def wbc_boxes(annotation: Path) -> list[list[float]]:
    root = ElementTree.parse(annotation).getroot()
    return [
        [box_coordinate(item, f"bndbox/{k}", annotation) for k in ("xmin", "ymin", "xmax", "ymax")]
        for item in root.iter("object")
        if item.findtext("name", "").strip().upper() == "WBC"
    ]


def box_coordinate(item: ElementTree.Element, path: str, annotation: Path) -> float:
    """A number of a VOC annotation's object (`bndbox/xmin`), or a ValueError naming it."""
    text = item.findtext(path)
    if text is None:
        raise ValueError(f"{annotation}: an object has no {path}")
    return float(text)


def test_simple_set(data_dir: Path) -> list[BoxedImage]:
    table = json.loads((Path(data_dir) / "test_simple_wbc_boxes.json").read_text())["images"]
    return [
        BoxedImage(Path(data_dir) / name, entry["wbc_boxes_xyxy"], Path(name).parent.name)
        for name, entry in sorted(table.items())
    ]


def originals_set(data_dir: Path, split: str) -> list[BoxedImage]:
    """Originals of `split` in splits.csv that have an annotation with a WBC box."""
    images = []
    with open(Path(data_dir) / "splits.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            annotation = (
                Path(data_dir) / "annotations" / Path(row["original"]).with_suffix(".xml").name
            )
            if row["split"] != split or not annotation.is_file():
                continue
            boxes = wbc_boxes(annotation)
            if boxes:
                images.append(
                    BoxedImage(
                        Path(data_dir) / "originals" / row["original"], boxes, row["category"]
                    )
                )
    return sorted(images, key=lambda image: image.path)


def unlisted_set(data_dir: Path) -> list[BoxedImage]:
    """Annotated originals that splits.csv does not list (mixed-type fields, 13 of the 14 with
    two WBCs): in neither split, so the cell finder may be developed on them."""
    with open(Path(data_dir) / "splits.csv", newline="") as stream:
        listed = {row["original"] for row in csv.DictReader(stream)}
    images = []
    for annotation in sorted((Path(data_dir) / "annotations").glob("*.xml")):
        path = Path(data_dir) / "originals" / annotation.with_suffix(".jpg").name
        boxes = wbc_boxes(annotation)
        if path.name not in listed and path.is_file() and boxes:
            images.append(BoxedImage(path, boxes, "mixed"))
    return images


def iou(a: Box | list[float], b: list[float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def matches(cells: list[Box], truths: list[list[float]]) -> int:
    """How many annotated boxes a found cell matches at IoU >= 0.5, each cell used once
    (greedily, best overlap first)."""
    used: set[int] = set()
    for truth in truths:
        best = max(
            ((iou(cell, truth), index) for index, cell in enumerate(cells) if index not in used),
            default=(0.0, -1),
        )
        if best[0] >= 0.5:
            used.add(best[1])
    return len(used)


def centre_inside(box: Box, truth: list[float]) -> bool:
    x, y = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    return truth[0] <= x <= truth[2] and truth[1] <= y <= truth[3]


def score(images: list[BoxedImage], spec: Localisation) -> dict:
    """Centre hits, IoU with the best-matching WBC box, no-cell count, time per image."""
    hits, overlaps, seconds = 0, [], []
    found = matched = annotated = 0
    misses: list[dict[str, Any]] = []
    for image in images:
        rgb = read_rgb(image.path)
        started = time.perf_counter()
        cells = find_cells(rgb, spec)
        seconds.append(time.perf_counter() - started)
        box = cells[0] if cells else None
        pairs = matches(cells, image.boxes)
        found, matched, annotated = (
            found + len(cells),
            matched + pairs,
            annotated + len(image.boxes),
        )
        if box is None:
            overlaps.append(0.0)
            misses.append({"image": str(image.path), "label": image.label, "box": None})
            continue
        hit = any(centre_inside(box, truth) for truth in image.boxes)
        hits += hit
        overlaps.append(max(iou(box, truth) for truth in image.boxes))
        if not hit:
            misses.append(
                {
                    "image": str(image.path),
                    "label": image.label,
                    "box": list(box),
                    "truth": image.boxes,
                }
            )
    return {
        "count": len(images),
        "centre_inside": hits / len(images),
        "centre_hits": hits,
        "no_cell": sum(m["box"] is None for m in misses),
        "mean_iou": float(np.mean(overlaps)),
        "median_iou": float(np.median(overlaps)),
        "iou_at_least_0.5": float(np.mean(np.asarray(overlaps) >= 0.5)),
        "ms_per_image_median": 1000 * float(np.median(seconds)),
        "cells_found": found,
        "wbc_boxes": annotated,
        "recall": matched / max(1, annotated),
        "precision": matched / max(1, found),
        "frame": "x".join(map(str, read_rgb(images[0].path).shape[1::-1])),
        "misses": misses,
    }


def evaluate_localiser(data_dir: Path, spec: Localisation) -> dict:
    """The localiser on the train originals (the only boxes its parameters were tuned on)
    and on the held-out TEST_SIMPLE frames and 640x480 test originals."""
    return {
        "parameters": spec.model_dump(),
        "train_originals_640x480 (tuning set)": score(originals_set(data_dir, "train"), spec),
        "unlisted_originals_640x480 (tuning set)": score(unlisted_set(data_dir), spec),
        "test_simple": score(test_simple_set(data_dir), spec),
        "test_originals_640x480": score(originals_set(data_dir, "test"), spec),
    }


def write_localiser_report(report: dict, directory: Path) -> None:
    """reports/localiser.json (with every miss) and reports/localiser.md (the table)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "localiser.json").write_text(json.dumps(report, indent=1) + "\n")
    (directory / "localiser.md").write_text(
        "# Cell localiser alone\n\nCentre of the found box inside an annotated WBC box, and "
        "the IoU with the best-matching WBC box (0 where no cell was found) of the main cell; "
        "recall and precision of every cell found against every WBC box (IoU >= 0.5); "
        "ms/image is the median time of `find_cells` on this machine.\n\n" + markdown(report)
    )
    if (directory.parent / MANIFEST_FILE).is_file():  # an entry's reports: its card shows them
        write_model_card(directory.parent)


def markdown(report: dict) -> str:
    lines = [
        "| set | images | centre in WBC box | no cell | mean IoU | IoU >= 0.5 | every cell: "
        "recall | precision | ms/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, result in report.items():
        if key == "parameters":
            continue
        lines.append(
            f"| {key} ({result['frame']}) | {result['count']} | {result['centre_hits']}/"
            f"{result['count']} = {result['centre_inside']:.3f} | {result['no_cell']} | "
            f"{result['mean_iou']:.3f} | {result['iou_at_least_0.5']:.3f} | "
            f"{result['recall']:.3f} ({result['wbc_boxes']} boxes) | "
            f"{result['precision']:.3f} ({result['cells_found']} cells) | "
            f"{result['ms_per_image_median']:.2f} |"
        )
    return "\n".join(lines) + "\n"
