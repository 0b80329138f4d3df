"""Classification metrics from labels and predicted probabilities.

The counts and scores are scikit-learn's; ECE, which it lacks, is computed here. scikit-learn
is imported where it is used, so importing this module stays as light as NumPy."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes (every class, even one never seen)."""
    from sklearn import metrics

    return metrics.confusion_matrix(labels, predicted, labels=np.arange(num_classes))


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 15
) -> float:
    """ECE (Guo et al. 2017, eq. 3): sum_m |B_m|/n * |acc(B_m) - conf(B_m)| over equal-width
    confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_of = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = bin_of == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def classification_report(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro-F1, ECE, NLL, confusion matrix."""
    from sklearn import metrics

    classes = np.arange(len(class_names))
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    # A class never predicted (or never present) scores 0, not NaN.
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    # Clipped at 1e-12 as the hand-written version was (a saturated miss costs 27.6, so NLLs
    # stay comparable with earlier reports), in float64 and renormalised: rows summed in
    # float32 miss 1 by more than log_loss tolerates.
    exact = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    nll = metrics.log_loss(labels, exact / exact.sum(axis=1, keepdims=True), labels=classes)
    return {
        "count": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1.mean()),
        "ece": expected_calibration_error(labels, probabilities),
        "nll": float(nll),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(matrix[i].sum()),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": {"labels": class_names, "rows_true_cols_predicted": matrix.tolist()},
    }
