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
