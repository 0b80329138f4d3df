"""Grouped K-fold cross-validation of one recipe over the train originals.

Each fold holds out a class-stratified share of the train originals with every copy of
them (`data.stratified_holdout` with `folds`), so over the K folds every original is held
out exactly once. The pooled out-of-fold answers (the served answer: mirror and all,
through `ModelRuntime`) estimate how the recipe does on originals it has never seen, from
all of them rather than the few dozen of one hold-out, and fit the temperature that a refit
of the same recipe on every original carries (`calibrate --temperature-from REPORT`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from model_core.store.manifest import Calibration
from training.pipeline.calibration import CV_REPORT_FILE, fit_temperature, logits_and_features
from training.pipeline.config import LEGACY_DEFAULTS, TrainConfig
from training.pipeline.data import DataError, class_names_of
from training.pipeline.evaluate import softmax
from training.pipeline.metrics import classification_report, expected_calibration_error

# Settings that say where and on what a study runs, not what it measures: a study may
# resume with them changed (e.g. the data set moved).
_WHERE_AND_HOW = frozenset({"data_dir", "store_dir", "backup_dir", "strategy", "cpu_replicas"})


def _fold_answers(directory: Path, fold: int) -> Path:
    return directory / f"fold-{fold}.npz"


def _study_config(config: TrainConfig, folds: int, output_dir: Path) -> TrainConfig:
    """The recipe with its folds (fold 0 stands for all)."""
    return replace(
        config,
        folds=folds,
        fold=0,
        validation_fraction=0.0,
        evaluate=False,
        temperature_from=None,
        store_dir=Path(output_dir),
        backup_dir=None,
    )


def study_record(config: TrainConfig, folds: int, output_dir: Path) -> dict:
    """The training record of the study, kept with each fold's answers and in the report."""
    return _study_config(config, folds, output_dir).to_record()


def _with_legacy_defaults(record: dict) -> dict:
    """A saved study record with the settings it predates filled in as they were then
    (`LEGACY_DEFAULTS`: a study made before `fold_method` existed used round-robin folds)."""
    return (LEGACY_DEFAULTS | record) if record else record


def train_fold(config: TrainConfig, folds: int, fold: int, output_dir: Path) -> Path:
    """Train fold `fold` into its own store under `output_dir` and save its out-of-fold
    logits, labels and files, with the study's record (`fold-<k>.npz`); return that file."""
    from training.pipeline.publish import publish
    from training.pipeline.train import train

    fold_config = replace(
        _study_config(config, folds, output_dir),
        fold=fold,
        store_dir=output_dir / f"fold-{fold}",
        backup_dir=output_dir / f"backup-{fold}",
    )
    keras.backend.clear_session()
    result = train(fold_config)
    if result.validation is None:
        raise DataError(f"fold {fold} of {folds} held out no images")
    _, manifest = publish(result, fold_config)
    logits, _ = logits_and_features(result.model, manifest, result.validation, [])
    answers = _fold_answers(output_dir, fold)
    np.savez(
        answers,
        logits=logits,
        labels=result.validation.labels,
        paths=np.array([str(path) for path in result.validation.paths]),
        study=json.dumps(study_record(config, folds, output_dir)),
    )
    accuracy = (logits.argmax(axis=1) == result.validation.labels).mean()
    print(
        f"fold {fold} ({fold + 1} of {folds}): {len(result.validation)} held-out copies, "
        f"accuracy {accuracy:.4f}",
        flush=True,
    )
    return answers


def cross_validate(config: TrainConfig, folds: int, output_dir: Path) -> dict:
    """Train every fold not yet done (a fold whose answers exist is kept, so an interrupted
    study resumes), then pool the answers into the report (`CV_REPORT_FILE`)."""
    if folds < 2:
        raise DataError(f"--folds must be at least 2, not {folds}")
    if config.strategy == "multi-worker":
        raise DataError(
            "cross-validate trains its folds one after another in one process; "
            "--strategy multi-worker is for `train` (one process per machine)"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ours = study_record(config, folds, output_dir)
    for fold in range(folds):
        if not _fold_answers(output_dir, fold).is_file():
            train_fold(config, folds, fold, output_dir)
            continue
        with np.load(_fold_answers(output_dir, fold)) as answers:
            theirs = json.loads(str(answers["study"])) if "study" in answers else {}
        theirs = _with_legacy_defaults(theirs)
        different = sorted(
            key for key in set(ours) - _WHERE_AND_HOW if ours[key] != theirs.get(key)
        )
        if different:
            raise DataError(
                f"{_fold_answers(output_dir, fold)} was trained by another study "
                f"(differs in {', '.join(different)}): finish it with the same "
                "settings, or use another --output-dir"
            )
    report = pooled_report(config, folds, output_dir)
    (output_dir / CV_REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    (output_dir / "cv_report.md").write_text(markdown(report))
    return report


def pooled_report(config: TrainConfig, folds: int, output_dir: Path) -> dict:
    """Per-fold and pooled out-of-fold metrics, and the temperature fitted on the pool."""
    class_names = class_names_of(Path(config.data_dir) / "images" / "TRAIN")
    per_fold, all_logits, all_labels = [], [], []
    seen: set[str] = set()
    for fold in range(folds):
        with np.load(_fold_answers(output_dir, fold)) as answers:
            logits, labels = answers["logits"], answers["labels"]
            files = set(answers["paths"].tolist())  # an original and its copies share a file
        if files & seen:
            raise DataError(f"the folds in {output_dir} overlap: an image is held out twice")
        seen |= files
        temperature = fit_temperature(logits, labels)
        per_fold.append(
            {
                "fold": fold,
                "copies": int(len(labels)),
                "accuracy": float((logits.argmax(axis=1) == labels).mean()),
                "ece": expected_calibration_error(labels, softmax(logits)),
                "temperature": temperature,
            }
        )
        all_logits.append(logits)
        all_labels.append(labels)
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    temperature = fit_temperature(logits, labels)
    pooled = classification_report(labels, softmax(logits), class_names)
    # In sample: the temperature is fitted on these same answers.
    calibrated = classification_report(labels, softmax(logits / temperature), class_names)
    pooled |= {"ece_calibrated": calibrated["ece"], "nll_calibrated": calibrated["nll"]}
    images = (
        "every copy in images/TRAIN"
        if config.source == "train-folder"
        else f"each original with augmented copies of it ({config.validation_copies} each)"
    )
    return {
        "folds": folds,
        "training": study_record(config, folds, output_dir),
        "per_fold": per_fold,
        "pooled": pooled,
        "calibration": Calibration(
            temperature=temperature,
            fitted_on=f"{len(labels)} out-of-fold images ({images}; each train original held "
            "out once)",
        ).model_dump(),
    }


def markdown(report: dict) -> str:
    pooled = report["pooled"]
    lines = [
        f"# {report['folds']}-fold cross-validation over the train originals",
        "",
        "| fold | held-out copies | accuracy | ECE | temperature fitted on the fold |",
        "|---|---|---|---|---|",
        *(
            f"| {f['fold']} | {f['copies']} | {f['accuracy']:.4f} | {f['ece']:.4f} | "
            f"{f['temperature']:.3f} |"
            for f in report["per_fold"]
        ),
        f"| pooled | {pooled['count']} | {pooled['accuracy']:.4f} | {pooled['ece']:.4f} | "
        f"{report['calibration']['temperature']:.3f} |",
        "",
        f"Pooled: macro-F1 {pooled['macro_f1']:.4f}; recall "
        + ", ".join(f"{name} {m['recall']:.3f}" for name, m in pooled["per_class"].items())
        + f"; NLL {pooled['nll']:.4f} -> {pooled['nll_calibrated']:.4f} and ECE "
        f"{pooled['ece']:.4f} -> {pooled['ece_calibrated']:.4f} at the pooled temperature.",
        "",
    ]
    return "\n".join(lines)
