"""The review flag's vocabulary and rules, and the threshold fit and risk-coverage numbers."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from app.core.schemas import CellPrediction
from model_core.inputs.localisation import Scale
from model_core.qualify import Qualification
from model_core.review import REASONS, ImageFacts, ReviewReason, review_reasons
from model_core.store.manifest import ReviewPolicy
from training.studies.review_fit import (
    accuracy_at,
    aurc,
    fit_threshold,
    policy_outcome,
    risk_coverage,
)

POLICY = ReviewPolicy(
    min_calibrated_confidence=0.8,
    target_accuracy=0.98,
    expected_coverage=0.8,
    expected_accuracy=0.98,
    fitted_on="test",
)
FRAME = ImageFacts(320, 240, Scale(0.15, "measured", field_of_view=True), True)
SURE = Qualification(0.95, True, 3.0, None)


def test_the_vocabulary_is_declared_once_and_documented():
    assert set(typing.get_args(ReviewReason)) == set(REASONS)
    described = CellPrediction.model_fields["review_reasons"].description
    assert all(reason in described for reason in REASONS)


def test_a_confident_cell_inside_the_frame_is_accepted():
    assert review_reasons(SURE, (100, 80, 180, 160), FRAME, POLICY) == []


@pytest.mark.parametrize(
    ("quality", "box", "facts", "expected"),
    [
        (Qualification(0.79, True, 3.0, None), (100, 80, 180, 160), FRAME, ["low_confidence"]),
        (
            Qualification(0.95, False, 40.0, "far"),
            (100, 80, 180, 160),
            FRAME,
            ["out_of_distribution"],
        ),
        (Qualification(0.95, False, None, "no cell"), None, FRAME, ["whole_frame"]),
        (SURE, (0, 80, 40, 160), FRAME, ["cell_at_edge"]),
        (SURE, (280, 150, 320, 240), FRAME, ["cell_at_edge"]),
        (SURE, (100, 200, 180, 240), FRAME, ["cell_at_edge"]),
        (SURE, (0, 80, 60, 160), FRAME, []),  # touching, not cut: common and harmless
        (
            SURE,
            (10, 10, 180, 160),
            ImageFacts(190, 170, Scale(0.3, "assumed"), True),
            ["scale_assumed"],
        ),
        (SURE, (100, 80, 180, 160), ImageFacts(320, 240, Scale(0.15, "assumed", True), True), []),
        (
            SURE,
            (100, 80, 180, 160),
            ImageFacts(320, 240, FRAME.scale, False),
            ["colour_not_normalised"],
        ),
        (
            SURE,
            (100, 80, 180, 160),
            ImageFacts(320, 240, FRAME.scale, True, False),
            ["stain_unfamiliar"],
        ),
        (SURE, (100, 80, 180, 160), ImageFacts(320, 240, FRAME.scale, True, True), []),
        (
            SURE,
            (100, 80, 180, 160),
            ImageFacts(320, 240, FRAME.scale, False, None),
            ["colour_not_normalised"],
        ),
        (
            Qualification(0.5, False, 50.0, "far"),
            (0, 0, 20, 50),
            ImageFacts(320, 240, Scale(0.3, "assumed"), False, False),
            [
                "low_confidence",
                "out_of_distribution",
                "cell_at_edge",
                "scale_assumed",
                "colour_not_normalised",
                "stain_unfamiliar",
            ],
        ),
    ],
)
def test_each_reason_is_given_when_it_holds(quality, box, facts, expected):
    assert review_reasons(quality, box, facts, POLICY) == expected


def test_without_a_fitted_policy_confidence_flags_nothing():
    low = Qualification(0.3, True, 3.0, None)
    assert review_reasons(low, (100, 80, 180, 160), FRAME, None) == []


def test_risk_coverage_and_aurc_by_hand():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, False, True, True])
    coverage, risk = risk_coverage(confidence, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.25])
    assert aurc(confidence, correct) == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)
    assert accuracy_at(confidence, correct, 0.5) == 0.5
    assert aurc(confidence, np.ones(4, bool)) == 0.0


def test_the_threshold_is_the_lowest_that_keeps_the_target():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 2000)
    correct = rng.uniform(size=2000) < confidence  # right as often as it is confident
    policy = fit_threshold(confidence, correct, 0.95, "synthetic")
    accepted = confidence >= policy.min_calibrated_confidence
    assert correct[accepted].mean() >= 0.95
    assert policy.expected_coverage == pytest.approx(accepted.mean())
    assert policy.expected_accuracy == pytest.approx(correct[accepted].mean())
    # one more answer below it would break the target
    lower = confidence[~accepted].max()
    wider = confidence >= lower
    assert correct[wider].mean() < 0.95 or wider.sum() == accepted.sum()
    outcome = policy_outcome(policy, confidence, correct)
    assert outcome["coverage"] == pytest.approx(policy.expected_coverage)
    assert outcome["wrong_and_accepted"] <= 0.05 * outcome["coverage"] + 1e-9


def test_ties_are_accepted_or_refused_together():
    confidence = np.array([0.9, 0.9, 0.9, 0.5])
    correct = np.array([True, True, False, True])
    policy = fit_threshold(confidence, correct, 0.99, "ties")
    # the three tied answers are 67% right and cannot be split: nothing reaches 99%
    assert policy.min_calibrated_confidence > 0.9 and policy.expected_coverage == 0.0
    # at 60% the lowest threshold keeps everything (75% right)
    assert fit_threshold(confidence, correct, 0.6, "ties").expected_coverage == 1.0
    assert fit_threshold(confidence, correct, 0.6, "ties").min_calibrated_confidence == 0.5
