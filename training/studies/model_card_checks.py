"""What a model card says about the qualifiers serving adds to an answer (the calibrated
confidence, the out-of-distribution flag, the cell localiser, the explanation maps), and the
known failure modes that the scores and these checks show."""

from __future__ import annotations

from typing import Any

from training.studies.model_card_inputs import (
    EXPLANATION_BASELINES,
    EXPLANATIONS_FILE,
    LOCALISER_FILE,
    OOD_CHECK_FILE,
    REPORTS_DIR,
    REVIEW_FILE,
    SEED_REPORT_FILE,
    EntryFacts,
    not_measured,
    number,
    report_link,
    split_keys,
    split_label,
    table,
)
from training.studies.model_card_scores import confusions, failing_originals


def calibration_section(facts: EntryFacts) -> list[str]:
    calibration = facts.manifest.calibration
    if calibration is None:
        return not_measured(
            "no temperature was fitted or carried over, so serving reports no calibrated confidence"
        )
    temperature = calibration.temperature
    lines = [
        f"Temperature T = {number(temperature)}: the calibrated probabilities are "
        f"softmax(logits / T), which serving reports as calibrated confidence; T "
        + (
            "> 1 softens an over-confident"
            if temperature > 1
            else "< 1 sharpens an under-confident"
        )
        + " raw softmax.",
        "",
        f"Fitted on: {calibration.fitted_on}.",
    ]
    metrics = facts.manifest.metrics
    keys = [k for k in split_keys(metrics) if "ece_calibrated" in metrics[k]]
    if keys:
        rows = [
            [split_label(k), number(metrics[k].get("ece")), number(metrics[k]["ece_calibrated"])]
            for k in keys
        ]
        lines += ["", *table(["split", "ECE, raw", "ECE at T"], rows)]
        worse = [split_label(k) for k in keys if metrics[k]["ece_calibrated"] > metrics[k]["ece"]]
        if worse:
            lines += ["", f"On {', '.join(worse)} the temperature makes ECE worse."]
    return lines


def ood_section(facts: EntryFacts) -> list[str]:
    distribution = facts.manifest.feature_distribution
    if distribution is None:
        return not_measured(
            "the manifest has no feature distribution, so serving cannot flag inputs unlike "
            "the training images"
        )
    lines = [
        "Serving flags an input as unlike the training images when the Mahalanobis distance of "
        f"its pooled features ({', '.join(f'`{n}`' for n in distribution.layers)}) exceeds "
        f"{number(distribution.threshold, 2)}, the {distribution.threshold_quantile:.1%} quantile "
        f"of the training images' own distances, fitted on {distribution.fitted_on}: about "
        f"{1 - distribution.threshold_quantile:.1%} of images like the training ones are flagged "
        "by design.",
        "",
    ]
    check = facts.report(OOD_CHECK_FILE)
    if check is None:
        return lines + not_measured(
            f"the flag was not checked on test or foreign images (no "
            f"{REPORTS_DIR}/{OOD_CHECK_FILE})"
        )
    foreign = check.get("foreign_flagged", {})
    flagged = [name for name, (hit, _) in foreign.items() if hit]
    lines.append(
        f"Check ({report_link(OOD_CHECK_FILE)}): TEST_SIMPLE images flagged "
        f"{check.get('test_simple_flagged', 'n/a')}; generated foreign images (noise, flat "
        f"colours, text...) flagged {len(flagged)} of {len(foreign)} (distance in brackets): "
        + ", ".join(f"{name} ({distance})" for name, (_, distance) in foreign.items())
        + "."
    )
    if check.get("threshold") != distribution.threshold:
        lines += ["", f"The check used threshold {check.get('threshold')}, not the manifest's."]
    recorded = check.get("temperature")
    if facts.manifest.calibration and recorded != facts.manifest.calibration.temperature:
        lines += [
            "",
            f"The check also recorded temperature {number(recorded)} (TEST ECE at it "
            f"{number(check.get('test_ece_calibrated'))}), from before the manifest's present "
            "calibration; the flag does not depend on the temperature.",
        ]
    return lines


def localiser_section(facts: EntryFacts) -> list[str]:
    localisation = facts.manifest.preprocessing.localisation
    if localisation is None:
        return ["This entry classifies the whole frame: it has no cell localiser."]
    lines = [
        f"The `{localisation.method}` localiser: the largest component of a nucleus-colour mask "
        f"(HSV hue {localisation.hue_min}-{localisation.hue_max}, saturation >= "
        f"{localisation.saturation_min}, value >= {localisation.value_min}) at "
        f"{localisation.working_width} px width; the model sees the {localisation.window} px "
        "window around it.",
        "",
    ]
    report = facts.report(LOCALISER_FILE)
    if report is None:
        return lines + not_measured(f"no {REPORTS_DIR}/{LOCALISER_FILE}")
    rows = [
        [
            name,
            result.get("frame", "n/a"),
            result["count"],
            f"{result['centre_hits']}/{result['count']}",
            result["no_cell"],
            number(result.get("mean_iou")),
            number(result.get("iou_at_least_0.5")),
        ]
        for name, result in report.items()
        if name != "parameters"
    ]
    lines += [
        f"Scored against the annotated WBC boxes ({report_link(LOCALISER_FILE)}):",
        "",
        *table(
            ["set", "frame", "images", "centre in WBC box", "no cell", "mean IoU", "IoU >= 0.5"],
            rows,
        ),
    ]
    if report.get("parameters") != localisation.model_dump():
        lines += ["", "The report was made with other localiser parameters than this entry's."]
    return lines


def explanation_report(facts: EntryFacts) -> dict[str, Any] | None:
    report = facts.report(EXPLANATIONS_FILE) or facts.manifest.metrics.get("explanations")
    return report if isinstance(report, dict) and isinstance(report.get("metrics"), dict) else None


def explanations_beat_box(report: dict[str, Any]) -> bool | None:
    """Whether some method beats the `cell box` baseline on pointing game or energy; None
    without that baseline."""
    box = report["metrics"].get("cell box")
    if box is None:
        return None
    methods = [v for k, v in report["metrics"].items() if k not in EXPLANATION_BASELINES]
    return any(
        m.get(key, 0) > box.get(key, 0)
        for m in methods
        for key in ("pointing_game", "energy_pointing_game")
    )


def explanations_section(facts: EntryFacts) -> list[str]:
    report = explanation_report(facts)
    if report is None:
        return not_measured("no explanation report (`python -m training evaluate-explanations`)")
    columns = list(next(iter(report["metrics"].values())))
    lines = [
        f"Every explanation method scored on {report.get('split', 'TEST_SIMPLE')} "
        f"({report.get('images', 'n/a')} images) against the annotated WBC boxes; target: "
        f"{report.get('target', 'n/a')}, layer `{report.get('explanation_layer', 'n/a')}`"
        + (f", {report['scored_at']}" if "scored_at" in report else "")
        + ". Pointing game: share of maps whose peak is inside the WBC box (15px: within 15 px "
        "of it); energy: share of the map inside it; deletion / insertion AUC: the class score "
        "as the most salient pixels are removed / added (lower / higher is better). `random`, "
        "`centre` and `cell box` are baselines, not methods.",
        "",
        *table(
            ["method", *columns],
            [
                [name, *(number(row.get(c)) for c in columns)]
                for name, row in report["metrics"].items()
            ],
        ),
    ]
    beats = explanations_beat_box(report)
    if beats is False:
        lines += [
            "",
            "No method beats `cell box`, a map made from the localiser's box alone, on pointing "
            "game or energy: these numbers do not show that the maps say more than where the "
            "window was cut.",
        ]
    choice = report.get("layer_choice_on_train_originals")
    if isinstance(choice, dict):
        lines += [
            "",
            "Grad-CAM pointing game by layer on the train originals (the layer is chosen there): "
            + ", ".join(f"`{k}` {number(v)}" for k, v in choice.items())
            + ".",
        ]
    if facts.has_file("explanations_grid.png"):
        lines += ["", f"Maps: {report_link('explanations_grid.png')}."]
    return lines


def failure_modes(facts: EntryFacts) -> list[str]:
    """What the metrics and reports show going wrong, one sentence each."""
    manifest = facts.manifest
    test = manifest.metrics.get("test")
    found = confusions(test, manifest.class_names) if isinstance(test, dict) else []
    found = [f"On TEST, {item}" for item in found]
    seeds = facts.report(SEED_REPORT_FILE)
    if seeds is not None:
        failing, _ = failing_originals(seeds)
        if failing:
            found.append(
                f"{len(failing)} test originals are wrong in most of their TEST copies in the "
                f"seed runs ({', '.join(row[0] for row in failing)}): see Failing originals."
            )
    if isinstance(test, dict):
        found += _calibration_gap(test)
    found += _localiser_misses(facts)
    explanations = explanation_report(facts)
    if explanations is not None and explanations_beat_box(explanations) is False:
        found.append("Explanation maps score no better than the localiser's box alone.")
    if manifest.feature_distribution is None:
        found.append("No out-of-distribution flag: foreign images get a confident-looking label.")
    return found


def _localiser_misses(facts: EntryFacts) -> list[str]:
    report = facts.report(LOCALISER_FILE) or {}
    return [
        f"The localiser misses the white cell in {result['count'] - result['centre_hits']} of "
        f"{result['count']} frames of {name} ({result['no_cell']} with no cell found)."
        for name, result in report.items()
        if isinstance(result, dict) and result.get("centre_hits", 0) < result.get("count", 0)
    ]


def _calibration_gap(test: dict) -> list[str]:
    raw, calibrated = test.get("ece"), test.get("ece_calibrated")
    if isinstance(raw, float) and isinstance(calibrated, float) and calibrated > raw:
        return [
            f"The temperature makes TEST calibration worse (ECE {number(raw)} -> "
            f"{number(calibrated)}): its calibrated confidence is less trustworthy than the raw "
            "softmax."
        ]
    ece = calibrated if isinstance(calibrated, float) else raw
    if not isinstance(ece, float) or ece <= 0.05:
        return []
    how = "after temperature scaling" if ece is calibrated else "of the raw softmax"
    return [f"Confidence is approximate: TEST ECE {number(ece)} {how}."]


def review_section(facts: EntryFacts) -> list[str]:
    """The review threshold and what it does, unchanged and under colour shifts."""
    report = facts.report(REVIEW_FILE)
    policy = facts.manifest.review
    lines: list[str] = []
    stain = facts.manifest.preprocessing.stain_range
    if policy is None:
        lines += [
            "No confidence threshold is fitted: answers are flagged for review only for the "
            "other reasons (out of distribution, whole frame, cell at the edge, scale "
            "assumed, colour not balanced"
            + (", stain unfamiliar" if stain is not None else "")
            + ").",
            "",
        ]
    else:
        lines += [
            f"An answer whose calibrated confidence is below "
            f"{number(policy.min_calibrated_confidence)} is flagged `low_confidence`. Fitted "
            f"for {policy.target_accuracy:.0%} accuracy on accepted answers on "
            f"{policy.fitted_on}; there it accepts {policy.expected_coverage:.1%} of answers "
            f"at {policy.expected_accuracy:.1%}.",
            "",
        ]
    if stain is not None:
        lines += [
            f"An image whose red cells, once balanced, read a stain hue outside "
            f"{stain.hue[0]:g} to {stain.hue[1]:g} (OpenCV's units about red) or a saturation "
            f"outside {stain.saturation[0]:g} to {stain.saturation[1]:g} (percentiles "
            f"{stain.quantiles[0]:g} to {stain.quantiles[1]:g} of {stain.measured_on}) is "
            "flagged `stain_unfamiliar`.",
            "",
        ]
    if report is None:
        return lines + not_measured("`python -m training evaluate-review` was not run")
    lines += [
        f"What the service answers (`python -m training evaluate-review`; "
        f"[{REVIEW_FILE.replace('.json', '.md')}](reports/{REVIEW_FILE.replace('.json', '.md')}), "
        "[risk-coverage](reports/risk_coverage.png)). Coverage: the share of answers with no "
        "review reason; wrong, unflagged: wrong answers with no reason, of all answers. The "
        "shifts are `training/studies/colour_shifts.py`'s.",
        "",
    ]
    for key, rows in report.get("sets", {}).items():
        table_rows = [
            [
                name,
                number(row.get("accuracy")),
                number(row.get("coverage")),
                number(row.get("accepted_accuracy")),
                number(row.get("wrong_and_unflagged")),
            ]
            for name, row in rows.items()
        ]
        lines += [
            f"{split_label(key)}:",
            "",
            *table(
                ["shift", "accuracy", "coverage", "accepted accuracy", "wrong, unflagged"],
                table_rows,
            ),
            "",
        ]
        ranking = rows.get("unchanged", {}).get("ranking")
        if ranking:
            lines += [
                f"Ranked by calibrated confidence: AURC {number(ranking['aurc'], 4)}; the most "
                f"confident 70/80/90% are right {number(ranking['accuracy_at_70'])} / "
                f"{number(ranking['accuracy_at_80'])} / {number(ranking['accuracy_at_90'])}.",
                "",
            ]
    return lines
