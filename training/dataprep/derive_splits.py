"""Derive `splits.csv` and `test_simple_wbc_boxes.json` from a fetched data set.

The published archives hold neither file: `derive` rebuilds both from `labels.csv`, the
BCCD originals and their annotations, and the TEST_SIMPLE images, by matching each
TEST_SIMPLE image to the original it was resized from by pixels. On the real data set this
gives back both files exactly. `python -m training fetch-data` (training/dataprep/fetch.py) calls it
after unpacking. numpy and Pillow (already dependencies) are imported only when it runs.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")


@dataclass
class Derived:
    written: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """What could not be derived, and why."""


def single_type_labels(labels_csv: Path) -> dict[str, str]:
    """{"BloodImage_00000.jpg": "NEUTROPHIL", ...} for originals labelled with one of the four
    classes (not BASOPHIL, not mixed such as "NEUTROPHIL, EOSINOPHIL", not blank)."""
    labels = {}
    with open(labels_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            category = (row.get("Category") or "").strip()
            if category in CLASSES and row.get("Image", "").strip().isdigit():
                labels[f"BloodImage_{int(row['Image']):05d}.jpg"] = category
    return labels


def _thumbnail(path: Path):
    """A 64x48 grey thumbnail, centred and scaled to unit norm: its dot product with another
    is their correlation, blind to brightness and stain strength."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        small = np.asarray(
            image.convert("L").resize((64, 48), Image.Resampling.BOX), np.float32
        ).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


def match_test_simple(data_dir: Path, originals: list[Path]) -> dict[Path, Path]:
    """{TEST_SIMPLE image: the original it was resized from}, by pixels: the original whose
    thumbnail correlates best, kept when the correlation is at least 0.95 (on the real data
    set the right original scores 0.999 or more, the runner-up 0.62 at most)."""
    import numpy as np

    if not originals:
        return {}
    thumbs = np.stack([_thumbnail(p) for p in originals])
    matches = {}
    for image in sorted((data_dir / "images" / "TEST_SIMPLE").glob("*/*.jpeg")):
        correlations = thumbs @ _thumbnail(image)
        best = int(np.argmax(correlations))
        if correlations[best] >= 0.95:
            matches[image] = originals[best]
    return matches


def wbc_boxes(annotation: Path, scale: float) -> list[list[int]]:
    import xml.etree.ElementTree as ElementTree

    boxes = []
    for item in ElementTree.parse(annotation).getroot().iter("object"):
        if (item.findtext("name") or "").strip() == "WBC":
            box = item.find("bndbox")
            assert box is not None
            boxes.append(
                [
                    math.floor(float(box.findtext(k) or 0) * scale)
                    for k in ("xmin", "ymin", "xmax", "ymax")
                ]
            )
    return boxes


def derive(data_dir: Path, out_dir: Path | None = None) -> Derived:
    """splits.csv (every single-type labelled original: `test` when a TEST_SIMPLE image was
    resized from it, else `train`) and test_simple_wbc_boxes.json (each TEST_SIMPLE image's
    original and WBC boxes, halved to its 320x240 frame), as far as the inputs allow; written
    to `out_dir` (default: the data folder)."""
    out_dir = out_dir or data_dir
    result = Derived()
    labels_csv, originals_dir = data_dir / "labels.csv", data_dir / "originals"
    test_simple = data_dir / "images" / "TEST_SIMPLE"
    needs = [p for p in (labels_csv, originals_dir, test_simple) if not p.exists()]
    if needs:
        result.missing.append(
            "splits.csv and test_simple_wbc_boxes.json: no "
            + ", ".join(str(p.relative_to(data_dir)) for p in needs)
        )
        return result
    labels = single_type_labels(labels_csv)
    originals = sorted(p for p in originals_dir.glob("BloodImage_*.jpg") if p.name in labels)
    matches = match_test_simple(data_dir, originals)
    unmatched = len(list(test_simple.glob("*/*.jpeg"))) - len(matches)
    if unmatched:
        result.missing.append(
            f"{unmatched} TEST_SIMPLE images matched no original clearly; "
            "their originals count as train in splits.csv"
        )
    test_originals = {original.name for original in matches.values()}
    with open(out_dir / "splits.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["original", "category", "split"])
        for original in originals:
            split = "test" if original.name in test_originals else "train"
            writer.writerow([original.name, labels[original.name], split])
    result.written.append(f"splits.csv ({len(originals)} originals, {len(test_originals)} test)")
    boxes = {}
    for image, original in matches.items():
        annotation = data_dir / "annotations" / f"{original.stem}.xml"
        if annotation.is_file():
            boxes[str(image.relative_to(data_dir))] = {
                "original": f"originals/{original.name}",
                "annotation": f"annotations/{annotation.name}",
                "wbc_boxes_xyxy": wbc_boxes(annotation, 0.5),
            }
    if len(boxes) < len(matches):
        result.missing.append(
            f"{len(matches) - len(boxes)} matched TEST_SIMPLE images have "
            "no annotation, so no WBC box"
        )
    (out_dir / "test_simple_wbc_boxes.json").write_text(
        json.dumps(
            {
                "image_size_wh": [320, 240],
                "box_format": "xmin,ymin,xmax,ymax in pixels of the 320x240 image",
                "images": dict(sorted(boxes.items())),
            },
            indent=1,
        )
        + "\n"
    )
    result.written.append(f"test_simple_wbc_boxes.json ({len(boxes)} images)")
    return result
