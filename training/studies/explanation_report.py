"""`python -m training evaluate-explanations`: score every method on TEST_SIMPLE, choose the
explained layer on the train originals' boxes, write the tables and a picture grid."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from model_core.explainers import METHODS
from model_core.runtime import ModelRuntime, configure_tensorflow
from model_core.store.entries import load_entry, read_manifest, write_manifest
from model_core.store.manifest import REPORTS_DIR
from training.pipeline.data import FRAME_SIZE, list_originals, load_images
from training.studies.explanation_quality import (
    BASELINES,
    ScoredImages,
    frame_map,
    grid_png,
    method_maps,
    model_inputs,
    pointing_hit,
    score_maps,
    test_simple_with_boxes,
)
from training.studies.localiser_report import box_coordinate
from training.studies.model_card import write_model_card

CANDIDATE_LAYERS = ("fire4", "fire5", "fire6")


def train_originals_with_boxes(data_dir: Path, class_names: list[str]) -> ScoredImages:
    """Train originals that have a VOC annotation, with their WBC boxes in the 320x240 frame."""
    paths, labels = list_originals(data_dir, class_names, "train")
    kept, boxes = [], []
    for index, path in enumerate(paths):
        annotation = Path(data_dir) / "annotations" / f"{path.stem}.xml"
        if not annotation.is_file():
            continue
        root = ElementTree.parse(annotation).getroot()
        width = float(root.findtext("size/width") or 640)
        scale = FRAME_SIZE[1] / width
        found = [
            [
                box_coordinate(obj, f"bndbox/{k}", annotation) * scale
                for k in ("xmin", "ymin", "xmax", "ymax")
            ]
            for obj in root.iter("object")
            if obj.findtext("name") == "WBC"
        ]
        if found:
            kept.append(index)
            boxes.append(found)
    data = load_images([paths[i] for i in kept], labels[kept])
    return ScoredImages(data, boxes)


def choose_layer(runtime: ModelRuntime, scored: ScoredImages) -> dict[str, float]:
    """Grad-CAM's pointing game per candidate layer on the train originals."""
    inputs, cell_boxes = model_inputs(runtime, scored.data.images)
    scores = {}
    for layer in CANDIDATE_LAYERS:
        maps = method_maps(runtime, inputs, scored.data.labels, "gradcam", layer)
        hits = [
            pointing_hit(frame_map(runtime, m, image.shape, cell_box), boxes)
            for m, image, boxes, cell_box in zip(
                maps, scored.data.images, scored.boxes, cell_boxes, strict=True
            )
        ]
        scores[layer] = float(np.mean(hits))
    return scores


def evaluate_explanations(directory: Path, data_dir: Path, choose: bool = True) -> dict:
    """Write reports/explanations.{json,md} and explanations_grid.png; with `choose`, first
    set the manifest's explanation layer to the best candidate on the train originals."""
    manifest, model = load_entry(directory)
    runtime = ModelRuntime(manifest, model, directory, configure_tensorflow())
    layer_scores = None
    if choose:
        layer_scores = choose_layer(
            runtime, train_originals_with_boxes(data_dir, manifest.class_names)
        )
        best = max(layer_scores, key=lambda layer: layer_scores[layer])
        manifest = manifest.model_copy(
            update={"layers": manifest.layers.model_copy(update={"explanation": best})}
        )
        runtime.manifest = manifest
    scored = test_simple_with_boxes(data_dir, manifest.class_names)
    inputs, cell_boxes = model_inputs(runtime, scored.data.images)
    maps = {
        name: method_maps(
            runtime,
            inputs,
            scored.data.labels,
            name,
            manifest.layers.explanation if name != "cam" else None,
        )
        for name in METHODS
    }
    table = {
        name: score_maps(runtime, scored, inputs, list(maps[name]), cell_boxes=cell_boxes)
        for name in maps
    }
    table |= {
        name: score_maps(runtime, scored, inputs, None, baseline=name, cell_boxes=cell_boxes)
        for name in BASELINES
    }
    report = {
        "images": len(scored.data),
        "split": "TEST_SIMPLE",
        "target": "true class",
        "scored_at": "full frame (320x240); a cell window's map is put back where it was cut",
        "cell_window": manifest.preprocessing.localisation is not None,
        "no_cell_found": sum(box is None for box in cell_boxes),
        "explanation_layer": manifest.layers.explanation,
        "layer_choice_on_train_originals": layer_scores,
        "metrics": table,
    }
    reports = Path(directory) / REPORTS_DIR
    reports.mkdir(exist_ok=True)
    (reports / "explanations.json").write_text(json.dumps(report, indent=1) + "\n")
    (reports / "explanations.md").write_text(markdown_table(report))
    grid_png(runtime, scored, inputs, maps, reports / "explanations_grid.png", cell_boxes)
    stored = read_manifest(directory)
    write_manifest(
        directory,
        stored.model_copy(
            update={
                "layers": manifest.layers,
                "metrics": stored.metrics
                | {"explanations": {k: v for k, v in report.items() if k != "split"}},
            }
        ),
    )
    write_model_card(directory)
    return report


def markdown_table(report: dict) -> str:
    columns = list(next(iter(report["metrics"].values())))
    lines = [
        f"Explanations on {report['split']} ({report['images']} images, target: "
        f"{report['target']}, layer `{report['explanation_layer']}`; `cam` always explains "
        "the GAP input). Pointing games and energy at the full frame, deletion and insertion "
        "at the model input. Higher is better except deletion AUC."
        + (
            " The model classifies the localiser's cell window: `cell box` is a map made from "
            "that box alone, and a method is informative only where it beats it."
            if report.get("cell_window")
            else ""
        ),
        "",
        "| method | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, row in report["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    if report.get("layer_choice_on_train_originals"):
        choice = ", ".join(
            f"`{k}` {v:.3f}" for k, v in report["layer_choice_on_train_originals"].items()
        )
        lines += ["", f"Grad-CAM pointing game by layer on the train originals: {choice}."]
    return "\n".join(lines) + "\n"
