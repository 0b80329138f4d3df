"""Classification metrics from labels and predicted probabilities (plain NumPy)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


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
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    true_positives = np.diag(matrix).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(true_positives / matrix.sum(axis=0))
        recall = np.nan_to_num(true_positives / matrix.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "count": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1.mean()),
        "ece": expected_calibration_error(labels, probabilities),
        "nll": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
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
