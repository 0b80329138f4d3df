"""The review threshold and the risk-coverage of a model's answers.

Answers are ranked by calibrated confidence; accepting the most confident share c of them
(the coverage) leaves a risk (their error rate). The threshold is the lowest confidence at
which the accepted answers of held-out train originals are still right at the target
accuracy; it is fitted there, never on the test originals, which are only scored."""

from __future__ import annotations

import numpy as np

from model_core.store.manifest import ReviewPolicy

COVERAGES = (0.7, 0.8, 0.9)
"""Coverages at which reports state the accepted answers' accuracy."""


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage [N], risk [N]): accepting the k most confident answers, k = 1..N."""
    order = np.argsort(-confidence, kind="stable")
    right = np.cumsum(np.asarray(correct, float)[order])
    accepted = np.arange(1, len(order) + 1)
    return accepted / len(order), 1.0 - right / accepted


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """The area under the risk-coverage curve (the mean risk over every coverage): lower
    ranks better; 0 when every answer is right."""
    _, risk = risk_coverage(confidence, correct)
    return float(risk.mean())


def accuracy_at(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """The accuracy of the most confident `coverage` share of answers."""
    order = np.argsort(-confidence, kind="stable")
    kept = max(1, int(round(coverage * len(order))))
    return float(np.asarray(correct, float)[order[:kept]].mean())


def fit_threshold(
    confidence: np.ndarray, correct: np.ndarray, target_accuracy: float, fitted_on: str
) -> ReviewPolicy:
    """The lowest calibrated confidence whose accepted answers (confidence >= it) are right
    at least `target_accuracy` of the time; when no share reaches it, just above the most
    confident answer (everything goes to review)."""
    order = np.argsort(-confidence, kind="stable")
    ranked = np.asarray(confidence)[order]
    right = np.cumsum(np.asarray(correct, float)[order])
    accuracy = right / np.arange(1, len(order) + 1)
    # Only cut between distinct confidences: ties are accepted or refused together.
    cuts = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
    good = cuts[accuracy[cuts] >= target_accuracy]
    if not len(good):
        return ReviewPolicy(
            min_calibrated_confidence=float(min(1.0, np.nextafter(ranked[0], np.inf))),
            target_accuracy=target_accuracy,
            expected_coverage=0.0,
            expected_accuracy=1.0,  # nothing accepted, nothing wrong
            fitted_on=fitted_on,
        )
    last = int(good.max())
    return ReviewPolicy(
        min_calibrated_confidence=float(ranked[last]),
        target_accuracy=target_accuracy,
        expected_coverage=float((last + 1) / len(order)),
        expected_accuracy=float(accuracy[last]),
        fitted_on=fitted_on,
    )


def ranking_summary(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """AURC, accuracy and the accuracy at each of `COVERAGES`."""
    return {
        "count": int(len(confidence)),
        "accuracy": float(np.mean(correct)),
        "aurc": aurc(confidence, correct),
        **{f"accuracy_at_{round(c * 100)}": accuracy_at(confidence, correct, c) for c in COVERAGES},
    }


def policy_outcome(policy: ReviewPolicy, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """What the threshold does to a set of answers: coverage and accepted accuracy."""
    accepted = confidence >= policy.min_calibrated_confidence
    return {
        "coverage": float(accepted.mean()),
        "accepted_accuracy": float(np.asarray(correct)[accepted].mean())
        if accepted.any()
        else None,
        "wrong_and_accepted": float((accepted & ~np.asarray(correct, bool)).mean()),
    }
