"""`python -m training evaluate-review`: fit an entry's review threshold on held-out train
originals, and score what the service answers (accuracy, coverage, accepted accuracy,
wrong-and-unflagged, AURC) on them and on TEST and TEST_SIMPLE, each unchanged and under the
colour shifts of `colour_shifts.SHIFTS`. Writes `reports/review.{json,md}` and
`reports/risk_coverage.png`, and with `fit` the manifest's `review`."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from model_core.runtime import ModelRuntime
from model_core.store.entries import read_manifest, write_manifest
from model_core.store.manifest import REPORTS_DIR, ReviewPolicy
from training.pipeline.config import TrainConfig
from training.pipeline.data import DataError, LabelledImages, list_split, load_images
from training.pipeline.evaluate import EVALUATION_SPLITS
from training.studies.colour_shifts import SHIFTS, shifted
from training.studies.model_card import write_model_card
from training.studies.review_fit import fit_threshold, policy_outcome, ranking_summary
from training.studies.served_answers import ServedAnswers, served_answers

HELD_OUT_CACHE = Path("runs") / "held_out"
"""Which copies a training run held out, remembered per hold-out (matching the copies to
their originals takes minutes)."""


def held_out_frames(entry: Path, data_dir: Path) -> LabelledImages:
    """The copies of the train originals `entry`'s training run held out (its validation)."""
    from training.pipeline.train import load_training_data

    config = TrainConfig.from_record(read_manifest(entry).training)
    if not config.holds_out():
        raise DataError(
            f"{entry} was trained on every train original (validation_fraction 0): it has no "
            "held-out originals; pass --answers-from an entry of the same recipe that held "
            "some out"
        )
    config.data_dir = Path(data_dir)
    key = {
        name: str(getattr(config, name))
        for name in (
            "data_dir",
            "source",
            "validation_fraction",
            "holdout_seed",
            "seed",
            "folds",
            "fold",
            "fold_method",
            "limit_per_class",
        )
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = HELD_OUT_CACHE / f"{digest}.json"
    cacheable = config.source == "train-folder"  # "originals" validates on fresh copies
    if cacheable and cache.is_file():
        held = json.loads(cache.read_text())
        return load_images([Path(path) for path in held["paths"]], np.asarray(held["labels"]))
    _, _, validation = load_training_data(config)
    assert validation is not None
    if not cacheable:
        return validation
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(
        json.dumps(
            {
                "key": key,
                "paths": [str(path) for path in validation.paths],
                "labels": validation.labels.tolist(),
            }
        )
    )
    return validation


def outcome(answers: ServedAnswers, labels: np.ndarray) -> dict:
    """Accuracy, and what the review flag makes of it."""
    correct = answers.predicted == labels
    flagged = answers.flagged
    return {
        "count": int(len(labels)),
        "accuracy": float(correct.mean()),
        "coverage": float((~flagged).mean()),
        "accepted_accuracy": float(correct[~flagged].mean()) if (~flagged).any() else None,
        "wrong_and_unflagged": float((~correct & ~flagged).mean()),
        "flagged_besides_confidence": float(answers.flagged_besides_confidence().mean()),
    }


def evaluate_review(
    entry: Path,
    data_dir: Path,
    target_accuracy: float = 0.98,
    fit: bool = True,
    answers_from: Path | None = None,
    splits: tuple[str, ...] = ("test_simple", "test"),
    shifted_splits: tuple[str, ...] = ("validation", "test_simple"),
) -> dict:
    """Fit (with `fit`) and score the review policy of `entry`; see the module's doc. With
    `answers_from` (an entry of the same recipe and seed that held originals out, for a refit
    on every original), the threshold is fitted on that entry's answers to its held-out
    originals, as its temperature is carried over, and `validation` rows are its answers."""
    manifest = read_manifest(entry)
    runtime = ModelRuntime.load(entry.parent.parent, manifest.name, manifest.version)
    held_out_source = answers_from or entry
    held_out_runtime = runtime
    if answers_from is not None:
        source = read_manifest(answers_from)
        held_out_runtime = ModelRuntime.load(
            answers_from.parent.parent, source.name, source.version
        )
    sets = {}
    holds_out = TrainConfig.from_record(manifest.training).holds_out()
    if fit or answers_from is not None or holds_out:  # else: nothing held out to score
        sets["validation"] = held_out_frames(held_out_source, data_dir)
    for key in splits:
        folder = Path(data_dir) / "images" / EVALUATION_SPLITS[key]
        sets[key] = load_images(*list_split(folder, manifest.class_names))
    started = time.perf_counter()
    policy = manifest.review
    confidence_alone: dict[str, dict] = {}
    if fit:
        answers = served_answers(held_out_runtime, sets["validation"].images, policy=None)
        correct = answers.predicted == sets["validation"].labels
        policy = fit_threshold(
            answers.calibrated_confidence,
            correct,
            target_accuracy,
            fitted_on=f"the main cell's answers to {len(correct)} copies of the train originals "
            f"held out by {held_out_source.parent.name} v{held_out_source.name}'s training run "
            "(images/TRAIN, never the test originals), ranked by calibrated confidence",
        )
        write_manifest(entry, manifest.model_copy(update={"review": policy}))
    report: dict = {
        "model": {"name": manifest.name, "version": manifest.version},
        "policy": None if policy is None else policy.model_dump(),
        "held_out_from": str(held_out_source),
        "sets": {},
    }
    curves = {}
    for key, data in sets.items():
        rows = {}
        for name in SHIFTS if key in shifted_splits else ["unchanged"]:
            frames = data.images if name == "unchanged" else shifted(data.images, name)
            judge_by = held_out_runtime if key == "validation" else runtime
            answers = served_answers(judge_by, frames, policy)
            rows[name] = {"kind": SHIFTS[name][0], **outcome(answers, data.labels)}
            if name == "unchanged":
                correct = answers.predicted == data.labels
                rows[name]["ranking"] = ranking_summary(answers.calibrated_confidence, correct)
                if policy is not None:
                    confidence_alone[key] = policy_outcome(
                        policy, answers.calibrated_confidence, correct
                    )
                curves[key] = (answers.calibrated_confidence, correct)
        report["sets"][key] = rows
    report["confidence_alone"] = confidence_alone
    report["seconds"] = round(time.perf_counter() - started, 1)
    reports = entry / REPORTS_DIR
    reports.mkdir(exist_ok=True)
    (reports / "review.json").write_text(json.dumps(report, indent=1) + "\n")
    (reports / "review.md").write_text(markdown(report))
    _plot(curves, policy, reports / "risk_coverage.png", f"{manifest.name} v{manifest.version}")
    write_model_card(entry)
    return report


def _plot(curves: dict, policy: ReviewPolicy | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.studies.review_fit import risk_coverage

    figure, axes = plt.subplots(figsize=(6, 4))
    for key, (confidence, correct) in curves.items():
        coverage, risk = risk_coverage(confidence, correct)
        axes.plot(coverage, risk, label=f"{key} (n={len(correct)})")
    if policy is not None:
        axes.axhline(1 - policy.target_accuracy, color="grey", linestyle=":", label="target risk")
        axes.axvline(policy.expected_coverage, color="grey", linestyle="--", label="threshold")
    axes.set(xlabel="coverage (share of answers accepted)", ylabel="risk (error rate)")
    axes.set_title(f"{title}: risk-coverage, ranked by calibrated confidence")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(report: dict) -> str:
    model = report["model"]
    lines = [f"# Review and robustness: {model['name']} v{model['version']}", ""]
    policy = report["policy"]
    if policy:
        lines += [
            f"Threshold: calibrated confidence >= {policy['min_calibrated_confidence']:.3f} "
            f"(target accuracy {policy['target_accuracy']:.2f} on accepted answers; where "
            f"fitted it accepts {policy['expected_coverage']:.1%} at "
            f"{policy['expected_accuracy']:.1%}). Fitted on {policy['fitted_on']}.",
            "",
        ]
    lines += [
        "Coverage: the share of answers with no review reason; accepted accuracy: their "
        "accuracy; wrong and unflagged: wrong answers with no review reason, of all answers.",
        "",
    ]
    for key, rows in report["sets"].items():
        lines += [
            f"## {key}",
            "",
            "| shift | kind | accuracy | coverage | accepted accuracy | wrong and unflagged |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for name, row in rows.items():
            lines.append(
                f"| {name} | {row['kind']} | {_number(row['accuracy'])} | "
                f"{_number(row['coverage'])} | {_number(row['accepted_accuracy'])} | "
                f"{_number(row['wrong_and_unflagged'])} |"
            )
        ranking = rows["unchanged"].get("ranking")
        if ranking:
            lines += [
                "",
                f"Ranking (unchanged): AURC {ranking['aurc']:.4f}; accuracy of the most "
                f"confident 70% / 80% / 90%: {ranking['accuracy_at_70']:.3f} / "
                f"{ranking['accuracy_at_80']:.3f} / {ranking['accuracy_at_90']:.3f}.",
            ]
        lines.append("")
    return "\n".join(lines)
