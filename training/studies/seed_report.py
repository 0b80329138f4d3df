"""Seed spread and accuracy per original: several entries trained with the same recipe and
different seeds, scored on TEST and TEST_SIMPLE, with TEST's copies grouped by the original
behind them (training.dataprep.copy_originals)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model_core.inputs.transform import scale_pixels
from model_core.runtime import ModelRuntime, configure_tensorflow
from model_core.store.entries import load_entry, read_manifest
from training.dataprep.copy_originals import confident, load_or_match
from training.pipeline.data import list_split, load_images
from training.pipeline.datasets import cell_windows
from training.pipeline.evaluate import EVALUATION_SPLITS


def _relative(path: Path, data_dir: Path) -> str:
    return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()


def _originals_of(data_dir: Path, mapping: dict[str, dict]) -> dict[str, str]:
    """Every TEST and TEST_SIMPLE image (relative to the data root) -> its original."""
    table = json.loads((Path(data_dir) / "test_simple_wbc_boxes.json").read_text())["images"]
    return {name: entry["original"] for name, entry in table.items()} | {
        name: match["original"] if confident(match) else f"unmatched {Path(name).parent.name}"
        for name, match in mapping.items()
    }


def _split_inputs(manifest, data_dir: Path) -> dict[str, tuple]:
    """Per split: the images' paths, labels and model inputs (localised once, shared by
    every entry of the same preprocessing)."""
    prepared = {}
    for key, folder in EVALUATION_SPLITS.items():
        data = load_images(*list_split(Path(data_dir) / "images" / folder, manifest.class_names))
        pixels, _ = cell_windows(data, manifest.input_size, manifest.preprocessing)
        prepared[key] = (data.paths, data.labels, scale_pixels(pixels, manifest.preprocessing))
    return prepared


def score_entry(
    directory: Path, prepared: dict[str, tuple], originals: dict[str, str], data_dir: Path
) -> dict:
    """Accuracy, per-class recall and per-original accuracy of one entry on both splits."""
    manifest, model = load_entry(directory)
    result = {
        "directory": str(directory),
        "seed": manifest.training.get("seed"),
        # The epoch whose weights were kept: the best on validation, or the last.
        "kept_epoch": (manifest.training.get("best_epoch") or manifest.training.get("epochs")),
        "validation_accuracy": manifest.metrics.get("validation", {}).get("accuracy"),
    }
    runtime = ModelRuntime(
        manifest, model, Path(directory), configure_tensorflow(), feature_layers=[]
    )  # the answer serving gives
    for key, (paths, labels, inputs) in prepared.items():
        probabilities = np.concatenate(
            [
                runtime.predict(np.asarray(inputs[start : start + 128]))
                for start in range(0, len(inputs), 128)
            ]
        )
        correct = probabilities.argmax(axis=1) == labels
        per_original: dict[str, list[int]] = {}
        for path, hit in zip(paths, correct, strict=True):
            per_original.setdefault(originals[_relative(path, data_dir)], []).append(int(hit))
        result[key] = {
            "accuracy": float(correct.mean()),
            "count": int(len(correct)),
            "recall": {
                name: float(correct[labels == index].mean())
                for index, name in enumerate(manifest.class_names)
            },
            "per_original": {
                original: [sum(hits), len(hits)] for original, hits in sorted(per_original.items())
            },
        }
    return result


def seed_report(entries: list[Path], data_dir: Path, mapping_cache: Path) -> dict:
    """Every entry scored on TEST and TEST_SIMPLE (entries must share their preprocessing),
    with mean, min and max, and per-original hits."""
    mapping = load_or_match(data_dir, mapping_cache)
    originals = _originals_of(data_dir, mapping)
    classes = {}
    for name, original in originals.items():
        classes[original] = Path(name).parent.name  # images/<SPLIT>/<CLASS>/<file>
    manifests = [read_manifest(entry) for entry in entries]
    if any(
        (m.preprocessing, m.input_size) != (manifests[0].preprocessing, manifests[0].input_size)
        for m in manifests
    ):
        raise ValueError("the entries differ in preprocessing or input size")
    prepared = _split_inputs(manifests[0], data_dir)
    runs = [score_entry(entry, prepared, originals, data_dir) for entry in entries]
    summary = {}
    for key in EVALUATION_SPLITS:
        values = np.array([run[key]["accuracy"] for run in runs])
        summary[key] = {
            "mean": float(values.mean()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    weak = sum(not confident(m) for m in mapping.values())
    return {
        "runs": runs,
        "summary": summary,
        "original_class": classes,
        "matching": {
            "method": "ORB keypoints, ratio test; see training/dataprep/copy_originals.py",
            "test_images": len(mapping),
            "not_confident_left_unmatched": int(weak),
        },
    }


def markdown(report: dict) -> str:
    runs = report["runs"]
    names = list(runs[0]["test"]["recall"])
    lines = [
        "| seed | validation acc | kept epoch | TEST acc | TEST_SIMPLE acc | "
        + " | ".join(f"TEST recall {n[:3]}" for n in names)
        + " |",
        "|---" * (5 + len(names)) + "|",
    ]
    for run in runs:
        lines.append(
            f"| {run['seed']} | {_validation(run['validation_accuracy'])} | "
            f"{run['kept_epoch']} | {run['test']['accuracy']:.4f} | "
            f"{run['test_simple']['accuracy']:.4f} | "
            + " | ".join(f"{run['test']['recall'][n]:.3f}" for n in names)
            + " |"
        )
    for stat in ("mean", "min", "max"):
        lines.append(
            f"| {stat} | | | {report['summary']['test'][stat]:.4f} | "
            f"{report['summary']['test_simple'][stat]:.4f} |" + " |" * len(names)
        )
    lines += [
        "",
        "Accuracy per original (TEST copies correct/total per seed; TEST_SIMPLE: the "
        "original itself, 1 = right), originals below 0.9 on TEST in any seed:",
        "",
        "| original | class | "
        + " | ".join(f"seed {r['seed']} TEST" for r in runs)
        + " | "
        + " | ".join(f"seed {r['seed']} SIMPLE" for r in runs)
        + " |",
        "|---" * (2 + 2 * len(runs)) + "|",
    ]
    for original in sorted(runs[0]["test"]["per_original"]):
        cells = [run["test"]["per_original"][original] for run in runs]
        if min(c / n for c, n in cells) >= 0.9:
            continue
        simple = [run["test_simple"]["per_original"].get(original, [0, 0]) for run in runs]
        lines.append(
            f"| {Path(original).stem} | {report['original_class'][original]} | "
            + " | ".join(f"{c}/{n}" for c, n in cells)
            + " | "
            + " | ".join(f"{c}/{n}" for c, n in simple)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _validation(accuracy: float | None) -> str:
    return "none held out" if accuracy is None else f"{accuracy:.4f}"
