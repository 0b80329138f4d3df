"""Evaluate a store entry on held-out splits; write metrics and plots next to the model."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from model_core.store.entries import load_entry, write_manifest
from model_core.store.manifest import REPORTS_DIR, Manifest
from training.pipeline.calibration import logits_and_features
from training.pipeline.data import LabelledImages, list_split, load_images
from training.pipeline.metrics import classification_report, expected_calibration_error
from training.pipeline.plots import plot_confusion_matrix
from training.studies.model_card import write_model_card

# Report key -> folder under images/.
EVALUATION_SPLITS = {"test": "TEST", "test_simple": "TEST_SIMPLE"}


def predict_probabilities(
    model: keras.Model, data: LabelledImages, manifest: Manifest
) -> np.ndarray:
    logits, _ = logits_and_features(model, manifest, data, [])
    return softmax(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def evaluate_entry(
    directory: Path,
    data_dir: Path,
    splits: tuple[str, ...] = tuple(EVALUATION_SPLITS),
    extra: dict[str, LabelledImages] | None = None,
) -> dict:
    """Score the saved model on each split (plus `extra` named sets); store the results in
    the manifest and in reports/metrics.json, with a confusion-matrix PNG per split."""
    manifest, model = load_entry(directory)
    sets = {
        key: load_images(
            *list_split(Path(data_dir) / "images" / EVALUATION_SPLITS[key], manifest.class_names)
        )
        for key in splits
    } | (extra or {})
    reports = Path(directory) / REPORTS_DIR
    reports.mkdir(exist_ok=True)
    metrics = dict(manifest.metrics)
    for key, data in sets.items():
        logits, _ = logits_and_features(model, manifest, data, [manifest.layers.features])
        report = classification_report(data.labels, softmax(logits), manifest.class_names)
        if manifest.calibration is not None:
            report["ece_calibrated"] = expected_calibration_error(
                data.labels, softmax(logits / manifest.calibration.temperature)
            )
        metrics[key] = report
        plot_confusion_matrix(
            np.asarray(report["confusion_matrix"]["rows_true_cols_predicted"]),
            manifest.class_names,
            f"{manifest.name} v{manifest.version}: {key} "
            f"(n={report['count']}, accuracy {report['accuracy']:.3f})",
            reports / f"confusion_{key}.png",
        )
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_manifest(directory, manifest.model_copy(update={"metrics": metrics}))
    write_model_card(directory)
    return metrics


def summary_line(metrics: dict) -> str:
    return "; ".join(
        f"{key}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f}"
        for key, m in metrics.items()
    )
