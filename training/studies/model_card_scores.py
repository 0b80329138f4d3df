"""The scores in a model card: metrics per split and class with confusion matrices,
cross-validation, seed spread and the test originals that fail. Each section takes an
entry's facts and returns Markdown lines; where the entry lacks the data, one line says so."""

from __future__ import annotations

from typing import Any

from training.pipeline.config import TrainConfig
from training.studies.model_card_inputs import (
    CV_REPORT_FILE,
    REPORTS_DIR,
    SEED_REPORT_FILE,
    EntryFacts,
    not_measured,
    number,
    report_link,
    split_keys,
    split_label,
    table,
)

PATH_SETTINGS = {"data_dir", "store_dir", "backup_dir", "temperature_from", "evaluate"}


def metrics_section(facts: EntryFacts) -> list[str]:
    metrics = facts.manifest.metrics
    keys = split_keys(metrics)
    if not keys:
        return not_measured("the manifest records no evaluation (`python -m training evaluate`)")
    rows = []
    for key in keys:
        report = metrics[key]
        count, accuracy = report.get("count"), report.get("accuracy")
        right = f" ({round(accuracy * count)}/{count})" if isinstance(count, int) else ""
        rows.append(
            [
                split_label(key),
                count if count is not None else "n/a",
                number(accuracy) + right,
                number(report.get("macro_f1")),
                number(report.get("ece")),
                number(report.get("ece_calibrated")),
                number(report.get("nll")),
            ]
        )
    lines = [
        "From the manifest's `metrics` (written by `python -m training evaluate`). ECE: expected "
        "calibration error over 15 confidence bins, of the raw softmax and after temperature "
        "scaling; NLL: mean negative log-likelihood. The validation split, where there is one, "
        "holds copies of held-out train originals.",
        "",
        *table(
            ["split", "images", "accuracy", "macro-F1", "ECE", "ECE after temperature", "NLL"],
            rows,
        ),
    ]
    return lines + _per_class(facts, keys) + _confusion_matrices(facts, keys)


def _per_class(facts: EntryFacts, keys: list[str]) -> list[str]:
    keys = [k for k in keys if isinstance(facts.manifest.metrics[k].get("per_class"), dict)]
    if not keys:
        return []
    rows = []
    for name in facts.manifest.class_names:
        row = [name]
        for key in keys:
            scores = facts.manifest.metrics[key]["per_class"].get(name, {})
            row.append(
                f"{number(scores.get('precision'))} / {number(scores.get('recall'))} / "
                f"{number(scores.get('f1'))} ({scores.get('support', 'n/a')})"
            )
        rows.append(row)
    header = ["class", *(f"{split_label(k)}: precision / recall / F1 (images)" for k in keys)]
    return ["", "Per class:", "", *table(header, rows)]


def _confusion_matrices(facts: EntryFacts, keys: list[str]) -> list[str]:
    lines = []
    for key in keys:
        matrix = facts.manifest.metrics[key].get("confusion_matrix")
        if not isinstance(matrix, dict):
            continue
        labels = matrix.get("labels", facts.manifest.class_names)
        picture = f"confusion_{key}.png"
        lines += [
            "",
            f"Confusion matrix, {split_label(key)} (rows: true class, columns: predicted)"
            + (f"; picture: {report_link(picture)}" if facts.has_file(picture) else "")
            + ":",
            "",
            *table(
                ["true \\ predicted", *labels],
                [
                    [label, *counts]
                    for label, counts in zip(
                        labels, matrix["rows_true_cols_predicted"], strict=True
                    )
                ],
            ),
        ]
    return lines


def confusions(report: dict[str, Any], class_names: list[str]) -> list[str]:
    """Sentences on each class with recall or precision below 0.9, from the confusion matrix."""
    matrix = report.get("confusion_matrix", {}).get("rows_true_cols_predicted")
    per_class = report.get("per_class", {})
    if not matrix or len(matrix) != len(class_names):
        return []
    found = []
    for index, name in enumerate(class_names):
        scores = per_class.get(name, {})
        row = matrix[index]
        if scores.get("recall", 1.0) < 0.9:
            other = max((j for j in range(len(row)) if j != index), key=lambda j: row[j])
            found.append(
                f"{name}: recall {number(scores['recall'])}; {row[other]} of {sum(row)} are "
                f"called {class_names[other]}."
            )
        if scores.get("precision", 1.0) < 0.9:
            wrong = sum(matrix[i][index] for i in range(len(matrix)) if i != index)
            found.append(
                f"{name} answers are often wrong: precision {number(scores['precision'])}; "
                f"{wrong} images of other classes are called {name}."
            )
    return found


def cross_validation_section(facts: EntryFacts) -> list[str]:
    report = facts.report(CV_REPORT_FILE)
    calibration = facts.manifest.calibration
    if report is None:
        if calibration and "cross-validation" in calibration.fitted_on:
            return [
                f"The temperature was carried over from a cross-validation whose report is not "
                f"in {REPORTS_DIR}/: {calibration.fitted_on}"
            ]
        return not_measured(f"no {REPORTS_DIR}/{CV_REPORT_FILE}")
    pooled = report["pooled"]
    rows = [
        [f["fold"], f["copies"], number(f["accuracy"]), number(f["ece"]), number(f["temperature"])]
        for f in report["per_fold"]
    ]
    rows.append(
        [
            "pooled",
            pooled["count"],
            number(pooled["accuracy"]),
            number(pooled["ece"]),
            number(report["calibration"]["temperature"]),
        ]
    )
    recall = ", ".join(f"{n} {number(m.get('recall'))}" for n, m in pooled["per_class"].items())
    return [
        f"{report['folds']}-fold cross-validation of this entry's recipe over the train "
        f"originals ({report_link(CV_REPORT_FILE)}): each train original is held out once, "
        "with all its copies, and the out-of-fold answers are pooled. The pooled accuracy is "
        "the recipe's estimate on originals it has not seen.",
        "",
        *table(["fold", "held-out images", "accuracy", "ECE", "temperature fitted on it"], rows),
        "",
        f"Pooled: macro-F1 {number(pooled.get('macro_f1'))}; recall {recall}; ECE "
        f"{number(pooled.get('ece'))} -> {number(pooled.get('ece_calibrated'))} at the pooled "
        "temperature (in sample: fitted on these same answers).",
        "",
        _recipe_difference(report.get("training", {}), facts.record),
    ]


def _recipe_difference(study: dict[str, Any], record: dict[str, Any]) -> str:
    """Which settings of the study's recipe differ from the entry's, both read as configs (so
    settings older records lack take their legacy values)."""
    ours, theirs = TrainConfig.from_record(record).to_record(), TrainConfig.from_record(study)
    theirs_record = theirs.to_record()
    different = sorted(
        key
        for key in set(ours) - PATH_SETTINGS - {"folds", "fold"}
        if ours[key] != theirs_record[key]
    )
    if not different:
        return "Its settings are this entry's, but for the folds (and where files went)."
    return (
        "Its settings differ from this entry's in: "
        + ", ".join(f"{k} ({theirs_record[k]} there, {ours[k]} here)" for k in different)
        + "."
    )


def seeds_section(facts: EntryFacts) -> list[str]:
    report = facts.report(SEED_REPORT_FILE)
    if report is None:
        return not_measured(f"no {REPORTS_DIR}/{SEED_REPORT_FILE}")
    names = facts.manifest.class_names
    rows = [
        [
            run.get("seed"),
            _which(run.get("directory"), facts.record),
            number(run.get("validation_accuracy")),
            run.get("kept_epoch") or "n/a",
            number(run["test"]["accuracy"]),
            number(run["test_simple"]["accuracy"]),
            *(number(run["test"]["recall"].get(n)) for n in names),
        ]
        for run in report["runs"]
    ]
    summary = report.get("summary", {})
    lines = [
        f"Entries of this recipe trained with {len(rows)} seeds and scored on TEST and "
        f"TEST_SIMPLE with serving's own answer ({report_link(SEED_REPORT_FILE)}):",
        "",
        *table(
            ["seed", "run", "validation", "kept epoch", "TEST", "TEST_SIMPLE"]
            + [f"TEST recall {n}" for n in names],
            rows,
        ),
    ]
    for key in ("test", "test_simple"):
        if key in summary:
            spread = summary[key]
            lines.append(
                f"\n{split_label(key)} accuracy over the seeds: mean {number(spread['mean'])}, "
                f"min {number(spread['min'])}, max {number(spread['max'])}."
            )
    others = sorted(f for f in facts.reports if f.startswith("seed_report_"))
    for name in others:
        other = facts.reports[name]
        lines.append(
            f"\nAn earlier seed study, {report_link(name)}: {len(other.get('runs', []))} seeds, "
            f"TEST mean {number(other.get('summary', {}).get('test', {}).get('mean'))}."
        )
    return lines


def _which(directory: Any, record: dict[str, Any]) -> str:
    if directory is not None and directory == record.get("promoted_from"):
        return "this entry"
    if directory is not None and directory == record.get("temperature_from"):
        return "this refit's held-out run"
    return ""


def failing_originals(report: dict[str, Any]) -> tuple[list[list[Any]], int]:
    """Rows for the test originals right in under half of their TEST copies over the seeds,
    and how many more are below 0.9 in some seed."""
    runs = report["runs"]
    rows, unsteady = [], 0
    for original in sorted(runs[0]["test"]["per_original"]):
        if original.startswith("unmatched"):
            continue
        hits = [run["test"]["per_original"].get(original, [0, 0]) for run in runs]
        rates = [right / total for right, total in hits if total]
        if not rates or min(rates) >= 0.9:
            continue
        if sum(rates) / len(rates) >= 0.5:
            unsteady += 1
            continue
        simple = [run["test_simple"]["per_original"].get(original, [0, 0]) for run in runs]
        rows.append(
            [
                original.rsplit("/", 1)[-1].removesuffix(".jpg"),
                report.get("original_class", {}).get(original, "n/a"),
                ", ".join(f"{right}/{total}" for right, total in hits),
                ", ".join(f"{right}/{total}" for right, total in simple),
            ]
        )
    return rows, unsteady


def failing_originals_section(facts: EntryFacts) -> list[str]:
    report = facts.report(SEED_REPORT_FILE)
    if report is None:
        return not_measured("no per-original scores in the reports (the seed report has them)")
    rows, unsteady = failing_originals(report)
    matching = report.get("matching", {})
    ours = any(_which(run.get("directory"), facts.record) == "this entry" for run in report["runs"])
    lines = [
        "Test originals the seed runs above get wrong in most of their TEST copies (right / "
        "copies per seed; TEST_SIMPLE: the original itself)"
        + ("" if ours else "; this entry is not one of those runs and has no such scores itself")
        + ". TEST's copies of one original are not independent: an original that fails takes "
        "all its copies with it.",
        "",
        *(
            table(["original", "class", "TEST per seed", "TEST_SIMPLE per seed"], rows)
            if rows
            else ["None: every test original is right in most of its copies."]
        ),
        "",
        f"{unsteady} more are below 0.9 of their copies in some seed "
        f"({report_link('seed_report.md') if facts.has_file('seed_report.md') else 'the report'})"
        + (
            f"; {matching['not_confident_left_unmatched']} TEST images were not matched to "
            "an original with confidence and are left out."
            if "not_confident_left_unmatched" in matching
            else "."
        ),
    ]
    if facts.has_file("failing_originals.jpeg"):
        lines += ["", f"Pictures of them: {report_link('failing_originals.jpeg')}."]
    return lines
