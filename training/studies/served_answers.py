"""A model's answers to whole frames as the service gives them, in process: the frame's colour
balanced, its scale measured, every cell found, the main cell's window classified (with the
test-time mirror where the manifest asks), qualified and judged for review
(`model_core.review.judge`). Studies score these, not a shortcut, so what they report is
what a client of `/predict` gets (with no scale given)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_core.qualify import PredictionQualifier
from model_core.review import ReviewReason, judge
from model_core.runtime import ModelRuntime
from model_core.store.manifest import ReviewPolicy

BATCH = 64


@dataclass
class ServedAnswers:
    """One row per frame: its main cell's answer."""

    probabilities: np.ndarray
    """[N, classes], the served (flip-averaged) probabilities."""
    calibrated_confidence: np.ndarray
    """[N], the top class's probability after the manifest's temperature (the raw one
    without a temperature)."""
    reasons: list[list[ReviewReason]]
    """Why each answer goes to review (empty: accepted), with the confidence threshold of
    the policy the answers were judged by."""

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def flagged(self) -> np.ndarray:
        return np.array([bool(reasons) for reasons in self.reasons])

    def flagged_besides_confidence(self) -> np.ndarray:
        """Flagged for a reason other than low confidence."""
        return np.array([any(r != "low_confidence" for r in rs) for rs in self.reasons])


def served_answers(
    runtime: ModelRuntime,
    frames: list[np.ndarray] | np.ndarray,
    policy: ReviewPolicy | None = None,
) -> ServedAnswers:
    """The main cell's answer to each RGB uint8 frame, judged by `policy` (default: the
    manifest's)."""
    policy = runtime.manifest.review if policy is None else policy
    qualifier = PredictionQualifier(runtime.manifest)
    probabilities, confidences, reasons = [], [], []
    for start in range(0, len(frames), BATCH):
        prepared = [runtime.prepare(np.asarray(frame)) for frame in frames[start : start + BATCH]]
        forward = runtime.forward(np.stack([image.cells[0][0] for image in prepared]))
        for row, image in enumerate(prepared):
            quality, why = judge(
                qualifier,
                forward.logits[row],
                forward.features[row],
                image.cells[0][1],
                image.facts,
                policy,
                runtime.localises,
            )
            probabilities.append(forward.probabilities[row])
            confidences.append(
                forward.probabilities[row].max()
                if quality.calibrated_confidence is None
                else quality.calibrated_confidence
            )
            reasons.append(why)
    return ServedAnswers(np.stack(probabilities), np.asarray(confidences), reasons)
