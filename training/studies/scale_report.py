"""Score the red-cell scale estimator (model_core.inputs.scale) on originals of one split and
on rescaled, re-framed and cropped variants of them, against three truths per frame: the
reference radius times the applied factor, the same frame's own estimate at 1x (consistency
under rescaling), and the red-cell size its VOC boxes give. Run as
`python -m training.studies.scale_report DATA_DIR [--split train] [--out DIR]`."""

from __future__ import annotations

import argparse
import csv
import json
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_core.inputs.localisation import find_cell
from model_core.inputs.scale import ScaleEstimate, red_cell_radius_px
from model_core.store.manifest import Localisation
from training.studies.localiser_report import read_rgb

Estimator = Callable[[np.ndarray], ScaleEstimate | None]
TOLERANCE = 0.10
FIELD_FACTORS = (0.5, 0.7)
ENLARGEMENTS = (2.0, 3.0)
CROP_SIDES = (150, 250)


@dataclass
class Original:
    """An annotated 640x480 original: its WBC boxes and the red-cell radius its VOC boxes
    give (half the median min(w, h) of RBC boxes clear of the border), None without any."""

    path: Path
    wbc_boxes: list[list[float]]
    voc_radius: float | None


@dataclass
class Variant:
    """A frame made from an original and its scale relative to the 320x240 frame."""

    source: str
    rgb: np.ndarray
    factor: float


def _boxes(annotation: Path) -> dict[str, list[list[float]]]:
    boxes: dict[str, list[list[float]]] = {}
    for item in ElementTree.parse(annotation).getroot().iter("object"):
        bounds = item.find("bndbox")
        if bounds is None:
            continue
        box = [float(bounds.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.setdefault(item.findtext("name", "").strip().upper(), []).append(box)
    return boxes


def voc_radius(rbc_boxes: list[list[float]], width: int = 640, height: int = 480) -> float | None:
    clear = [
        b for b in rbc_boxes if b[0] > 1 and b[1] > 1 and b[2] < width - 1 and b[3] < height - 1
    ]
    if not clear:
        return None
    return float(np.median([min(b[2] - b[0], b[3] - b[1]) for b in clear])) / 2


def originals(data_dir: Path, split: str) -> list[Original]:
    """The annotated originals of `split` in splits.csv, sorted by name."""
    found = []
    with open(Path(data_dir) / "splits.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            annotation = Path(data_dir) / "annotations" / (Path(row["original"]).stem + ".xml")
            if row["split"] != split or not annotation.is_file():
                continue
            boxes = _boxes(annotation)
            path = Path(data_dir) / "originals" / row["original"]
            found.append(Original(path, boxes.get("WBC", []), voc_radius(boxes.get("RBC", []))))
    return sorted(found, key=lambda original: original.path)


def background_colour(rgb: np.ndarray) -> np.ndarray:
    """The glass: the median colour of the brightest, least saturated tenth of the pixels."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    glassiness = hsv[..., 2] - hsv[..., 1]
    return np.median(rgb[glassiness >= np.percentile(glassiness, 90)], axis=0).astype(np.uint8)


def _resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def in_field(frame: np.ndarray, factor: float) -> np.ndarray:
    """`frame` shrunk by `factor` and centred in a field of its glass colour of its own size."""
    small = _resize(frame, factor)
    field = np.empty_like(frame)
    field[:] = background_colour(frame)
    y0, x0 = (frame.shape[0] - small.shape[0]) // 2, (frame.shape[1] - small.shape[1]) // 2
    field[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return field


def crop(rgb: np.ndarray, box: list[float], side: int) -> np.ndarray:
    """A `side`-pixel square centred on `box`, shifted to lie inside the image."""
    height, width = rgb.shape[:2]
    side = min(side, width, height)
    x0 = int(np.clip(round((box[0] + box[2] - side) / 2), 0, width - side))
    y0 = int(np.clip(round((box[1] + box[3] - side) / 2), 0, height - side))
    return rgb[y0 : y0 + side, x0 : x0 + side]


def variants(original: Original, rng: np.random.Generator) -> Iterator[Variant]:
    """The 640x480 original, its 320x240 half, that half shrunk into a field, enlarged, and
    tight crops of the original around each WBC box."""
    rgb = read_rgb(original.path)
    half = _resize(rgb, 0.5)
    yield Variant("originals 640x480", rgb, 2.0)
    yield Variant("half 320x240", half, 1.0)
    for factor in FIELD_FACTORS:
        yield Variant(f"{factor}x in a 320x240 field", in_field(half, factor), factor)
    for factor in ENLARGEMENTS:
        yield Variant(f"{factor:g}x of 320x240", _resize(half, factor), factor)
    yield Variant("3x of 640x480 (1920x1440)", _resize(rgb, 3.0), 6.0)
    for box in original.wbc_boxes[:1]:
        side = int(rng.integers(CROP_SIDES[0], CROP_SIDES[1] + 1))
        yield Variant("crops 150-250 px of 640x480", crop(rgb, box, side), 2.0)


def _timed(estimator: Estimator, rgb: np.ndarray) -> tuple[ScaleEstimate | None, float]:
    started = time.perf_counter()
    estimate = estimator(rgb)
    return estimate, time.perf_counter() - started


def _row(
    source: str, name: str, factor: float, voc: float | None, rgb: np.ndarray, estimator: Estimator
) -> dict:
    estimate, seconds = _timed(estimator, rgb)
    return {
        "source": source,
        "original": name,
        "factor": factor,
        "radius": None if estimate is None else estimate.radius_px,
        "quality": None if estimate is None else estimate.quality,
        "seconds": seconds,
        "voc_radius_320": None if voc is None else voc / 2,
    }


def measure(
    data_dir: Path, split: str, estimator: Estimator, limit: int | None = None
) -> list[dict]:
    """One row per variant frame: source, original, factor, estimate (None) and seconds."""
    rows = []
    rng = np.random.default_rng(0)
    for original in originals(data_dir, split)[:limit]:
        for variant in variants(original, rng):
            name, voc = original.path.name, original.voc_radius
            rows.append(_row(variant.source, name, variant.factor, voc, variant.rgb, estimator))
    return rows


def test_simple_rows(data_dir: Path, estimator: Estimator, limit: int | None = None) -> list[dict]:
    """The TEST_SIMPLE files themselves (320x240 JPEGs of the test originals), one row each."""
    table = json.loads((Path(data_dir) / "test_simple_wbc_boxes.json").read_text())["images"]
    rows = []
    for name, entry in sorted(table.items())[:limit]:
        annotation = Path(data_dir) / entry["annotation"]
        voc = voc_radius(_boxes(annotation).get("RBC", [])) if annotation.is_file() else None
        rgb = read_rgb(Path(data_dir) / name)
        original = Path(entry["original"]).name
        rows.append(_row("TEST_SIMPLE files 320x240", original, 1.0, voc, rgb, estimator))
    return rows


def _errors(estimates: np.ndarray, truths: np.ndarray) -> dict:
    """Share within TOLERANCE and median |error| over the frames that have both; frames
    without an estimate count as misses in the share."""
    has_truth = np.isfinite(truths)
    error = estimates[has_truth] / truths[has_truth] - 1
    hits = np.abs(np.nan_to_num(error, nan=np.inf)) <= TOLERANCE
    known = error[np.isfinite(error)]
    return {
        "frames": int(has_truth.sum()),
        "within": float(hits.mean()) if hits.size else float("nan"),
        "median_abs": float(np.median(np.abs(known))) if known.size else float("nan"),
    }


def summarise(rows: list[dict], reference: float) -> dict:
    """Per source: frames, no-estimate share, ms per image, and the errors against the
    reference, the frame's own 1x estimate and its VOC red-cell radius."""
    own = {r["original"]: r["radius"] for r in rows if r["source"] == "half 320x240"}
    summary = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        chosen = [r for r in rows if r["source"] == source]
        factor = np.array([r["factor"] for r in chosen])
        estimate = np.array([np.nan if r["radius"] is None else r["radius"] for r in chosen])
        own_1x = np.array([own.get(r["original"]) or np.nan for r in chosen], dtype=float)
        voc = np.array([r["voc_radius_320"] or np.nan for r in chosen], dtype=float)
        summary[source] = {
            "frames": len(chosen),
            "no_estimate": float(np.isnan(estimate).mean()),
            "ms_per_image": 1000 * float(np.median([r["seconds"] for r in chosen])),
            "vs_reference": _errors(estimate, reference * factor),
            "vs_own_1x": _errors(estimate, own_1x * factor),
            "vs_voc": _errors(estimate, voc * factor),
        }
    return summary


def timing_with_localiser(data_dir: Path, split: str, limit: int = 60) -> dict:
    """Median and 90th-percentile ms of find_cell plus the scale estimate per 640x480 original."""
    spec = Localisation.model_validate({})
    seconds = []
    for original in originals(data_dir, split)[:limit]:
        rgb = read_rgb(original.path)
        started = time.perf_counter()
        find_cell(rgb, spec)
        red_cell_radius_px(rgb)
        seconds.append(time.perf_counter() - started)
    return {
        "images": len(seconds),
        "ms_median": 1000 * float(np.median(seconds)),
        "ms_p90": 1000 * float(np.percentile(seconds, 90)),
    }


def worst(rows: list[dict], count: int = 40) -> list[dict]:
    """Frames without an estimate, then the `count` furthest from their VOC radius."""
    missed = [r for r in rows if r["radius"] is None]
    scored = [r for r in rows if r["radius"] is not None and r["voc_radius_320"] is not None]
    scored.sort(key=lambda r: -abs(r["radius"] / (r["voc_radius_320"] * r["factor"]) - 1))
    return missed + scored[:count]


def scale_report(
    data_dir: Path,
    split: str = "train",
    reference: float | None = None,
    estimator: Estimator = red_cell_radius_px,
    limit: int | None = None,
) -> dict:
    """The estimator scored on `split`'s originals and their variants. `reference` (red-cell
    radius on 320x240 frames) is measured on this split's half-scale frames when not given:
    measure it on train, then pass it when scoring test."""
    rows = measure(Path(data_dir), split, estimator, limit)
    if split == "test":
        rows += test_simple_rows(Path(data_dir), estimator, limit)
    halves = [r["radius"] for r in rows if r["source"] == "half 320x240" and r["radius"]]
    measured = float(np.median(halves)) if halves else float("nan")
    voc = [
        r["voc_radius_320"] for r in rows if r["source"] == "half 320x240" and r["voc_radius_320"]
    ]
    used = measured if reference is None else reference
    return {
        "split": split,
        "reference_radius_320": used,
        "measured_radius_320": measured,
        "voc_radius_320_median": float(np.median(voc)) if voc else float("nan"),
        "sources": summarise(rows, used),
        "timing_with_localiser_640x480": timing_with_localiser(Path(data_dir), split, limit or 60),
        "worst": worst(rows),
    }


def markdown(report: dict) -> str:
    """The per-source table: share within 10% and median |error| against each truth."""
    lines = [
        f"Split `{report['split']}`; reference red-cell radius on 320x240 frames "
        f"{report['reference_radius_320']:.2f} px (estimated median on this split "
        f"{report['measured_radius_320']:.2f} px; VOC boxes {report['voc_radius_320_median']:.2f}"
        " px).\n",
        "| source | frames | no estimate | within 10%: ref / own 1x / VOC "
        "| median abs error: ref / own 1x / VOC | ms/image |",
        "|---|---|---|---|---|---|",
    ]
    for source, row in report["sources"].items():
        truths = (row["vs_reference"], row["vs_own_1x"], row["vs_voc"])
        within = " / ".join(f"{t['within']:.3f}" for t in truths)
        median = " / ".join(f"{100 * t['median_abs']:.1f}%" for t in truths)
        lines.append(
            f"| {source} | {row['frames']} | {row['no_estimate']:.3f} | {within} | {median} "
            f"| {row['ms_per_image']:.2f} |"
        )
    timing = report["timing_with_localiser_640x480"]
    lines.append(
        f"\nfind_cell + scale estimate per 640x480 original: {timing['ms_median']:.2f} ms "
        f"median, {timing['ms_p90']:.2f} ms p90 ({timing['images']} images)."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--reference", type=float, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    arguments = parser.parse_args()
    report = scale_report(
        arguments.data_dir, arguments.split, arguments.reference, limit=arguments.limit
    )
    print(markdown(report))
    if arguments.out is not None:
        arguments.out.mkdir(parents=True, exist_ok=True)
        (arguments.out / f"scale_{arguments.split}.json").write_text(json.dumps(report, indent=1))
        (arguments.out / f"scale_{arguments.split}.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
