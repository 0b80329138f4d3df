import numpy as np
import pytest

from training.pipeline.metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
)
from training.pipeline.model import step_decay


def test_confusion_and_per_class_scores():
    labels = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.eye(3)[[0, 0, 1, 1, 2, 2]]  # one 0->1 and one 1->2 mistake
    report = classification_report(labels, probabilities, ["A", "B", "C"])
    assert report["confusion_matrix"]["rows_true_cols_predicted"] == [
        [2, 1, 0],
        [0, 1, 1],
        [0, 0, 1],
    ]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_class"]["A"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert report["per_class"]["B"]["precision"] == pytest.approx(0.5)
    assert report["per_class"]["C"]["f1"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def _scored_answers():
    """200 answers of a 4-class model that is right about half the time, as float32
    probabilities (as the model serves them)."""
    rng = np.random.default_rng(42)
    labels = rng.integers(0, 4, 200)
    logits = rng.normal(0, 2, (200, 4))
    logits[np.arange(200), labels] += 1.5
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return labels, (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)


def test_scores_are_the_hand_written_versions_numbers():
    """scikit-learn's confusion matrix, P/R/F1 and log loss replaced NumPy code; these are the
    numbers that code gave on the same answers (its NLL summed float32 logs, hence 1e-7)."""
    labels, probabilities = _scored_answers()
    report = classification_report(labels, probabilities, ["A", "B", "C", "D"])
    assert report["confusion_matrix"]["rows_true_cols_predicted"] == [
        [21, 8, 7, 10],
        [9, 23, 10, 11],
        [7, 7, 23, 13],
        [6, 7, 12, 26],
    ]
    assert report["accuracy"] == 0.465
    assert report["macro_f1"] == pytest.approx(0.46518668202173064, rel=1e-12)
    assert report["nll"] == pytest.approx(1.3267730474472046, rel=1e-6)
    assert report["ece"] == pytest.approx(0.2420452329516411, rel=1e-12)
    old = {
        "A": (0.4883720930232558, 0.45652173913043476, 0.47191011235955055, 46),
        "B": (0.5111111111111111, 0.4339622641509434, 0.46938775510204084, 53),
        "C": (0.4423076923076923, 0.46, 0.4509803921568628, 50),
        "D": (0.43333333333333335, 0.5098039215686274, 0.46846846846846846, 51),
    }
    for name, (precision, recall, f1, support) in old.items():
        assert report["per_class"][name] == {
            "precision": pytest.approx(precision, rel=1e-12),
            "recall": pytest.approx(recall, rel=1e-12),
            "f1": pytest.approx(f1, rel=1e-12),
            "support": support,
        }


def test_a_class_never_predicted_or_never_seen_scores_zero_not_nan():
    labels = np.array([0, 0, 1, 1, 1, 3])  # C never present, D never predicted
    probabilities = np.eye(4)[[0, 1, 1, 1, 0, 0]] * 0.96 + 0.01
    report = classification_report(labels, probabilities, ["A", "B", "C", "D"])
    assert report["per_class"]["C"] == {"precision": 0, "recall": 0, "f1": 0, "support": 0}
    assert report["per_class"]["D"] == {"precision": 0, "recall": 0, "f1": 0, "support": 1}
    assert report["per_class"]["A"]["f1"] == pytest.approx(0.4)
    assert report["macro_f1"] == pytest.approx(0.26666666666666666, rel=1e-12)
    assert report["nll"] == pytest.approx(2.3178146967364, rel=1e-12)  # -(3 ln .97 + 3 ln .01)/6


def test_expected_calibration_error_is_the_weighted_gap():
    labels = np.array([0, 0, 1, 1])
    # Two items at confidence 0.9 (both right), two at 0.6 (one right).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    expected = 0.5 * abs(1.0 - 0.9) + 0.5 * abs(0.5 - 0.6)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0]), np.array([[1.0, 0.0]])) == 0.0


def test_confusion_matrix_counts_every_pair():
    matrix = confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2)
    assert matrix.tolist() == [[0, 1], [1, 1]]


def test_step_decay_halves_every_ten_epochs_like_the_tutorial():
    schedule = step_decay(0.004, 10)
    assert [schedule(e) for e in (0, 8, 9, 18, 19, 29)] == [
        0.004,
        0.004,
        0.002,
        0.002,
        0.001,
        0.0005,
    ]


def test_nll_clips_a_saturated_miss_as_before():
    """A true class given probability 0 costs -log(1e-12) = 27.63, as in the reports written
    before scikit-learn computed it (two items, one saturated miss: 13.82)."""
    from training.pipeline.metrics import classification_report

    probabilities = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    report = classification_report(np.array([0, 0]), probabilities, ["A", "B"])
    assert report["nll"] == pytest.approx(-np.log(1e-12) / 2, rel=1e-6)
