"""Whether a person should look at an answer, and why: one small vocabulary of reasons,
decided the same way by the service, the folder-scoring command and the studies.

An answer is accepted only when none of the reasons holds. The confidence threshold is the
manifest's `review` policy (fitted on held-out train originals by
`training.studies.review_fit`); the other reasons need no fitting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from model_core.inputs.localisation import Box, Scale
from model_core.qualify import PredictionQualifier, Qualification
from model_core.store.manifest import ReviewPolicy

ReviewReason = Literal[
    "low_confidence",
    "out_of_distribution",
    "whole_frame",
    "cell_at_edge",
    "scale_assumed",
    "colour_not_normalised",
    "stain_unfamiliar",
]

REASONS: dict[ReviewReason, str] = {
    "low_confidence": "the calibrated confidence is below the threshold fitted on held-out "
    "train originals to keep the accepted answers at the manifest's target accuracy",
    "out_of_distribution": "the image does not look like the stained smears the model was "
    "trained on (in_distribution is false)",
    "whole_frame": "no white cell was found, so the whole frame was classified",
    "cell_at_edge": "the white cell is cut by the image's edge (its box there is narrower "
    "than 0.6 of its other side), so part of it is missing",
    "scale_assumed": "the image's scale was neither given (pixel_size_um) nor measurable "
    "from its red cells, and the white cell is larger than any in the training frames (a "
    "tight crop): the window was cut at a guessed size",
    "colour_not_normalised": "no background (glass) was found to white-balance the image "
    "by, so the camera's colour cast, if any, is still in it",
    "stain_unfamiliar": "the red cells' stain colour (their hue or saturation, once the image "
    "is white-balanced) lies outside the range of 98% of the training frames: another lab's "
    "stain or protocol, which the model did not learn from",
}
"""Every reason an answer can be flagged for, in the order they are listed."""

EDGE_MARGIN_PX = 1
"""A cell box within this many pixels of the image's edge touches it."""
CUT_SHAPE_RATIO = 0.6
"""A cell box that touches an edge is cut when it is narrower across that edge than this
share of its other side (a round cell with more than about a third cut off). Touching alone
is common and harmless: 27% of the data set's TRAIN copies (shifted and rotated, the box
grown by its margin) touch an edge, 4.7% by this rule (600 copies sampled)."""


@dataclass(frozen=True)
class ImageFacts:
    """What the input transform learnt of an image that bears on trusting its answers."""

    width: int
    height: int
    scale: Scale | None = None
    white_balanced: bool | None = None
    """False: the model balances colour by the background and none was found."""
    stain_familiar: bool | None = None
    """False: the red cells' stain lies outside the manifest's `stain_range`."""


def review_reasons(
    quality: Qualification,
    cell_box: Box | None,
    image: ImageFacts,
    policy: ReviewPolicy | None,
    localises: bool = True,
) -> list[ReviewReason]:
    """The reasons (keys of `REASONS`, in their order) to have a person look at one cell's
    answer; empty: the answer can be accepted as it is."""
    reasons: list[ReviewReason] = []
    if (
        policy is not None
        and quality.calibrated_confidence is not None
        and quality.calibrated_confidence < policy.min_calibrated_confidence
    ):
        reasons.append("low_confidence")
    if quality.in_distribution is False and not (localises and cell_box is None):
        reasons.append("out_of_distribution")
    if localises and cell_box is None:
        reasons.append("whole_frame")
    if cell_box is not None and _at_edge(cell_box, image):
        reasons.append("cell_at_edge")
    scale = image.scale
    if scale is not None and scale.source == "assumed" and not scale.field_of_view:
        reasons.append("scale_assumed")
    if image.white_balanced is False:
        reasons.append("colour_not_normalised")
    if image.stain_familiar is False:
        reasons.append("stain_unfamiliar")
    return reasons


def judge(
    qualifier: PredictionQualifier,
    logits: np.ndarray,
    features: np.ndarray,
    cell_box: Box | None,
    image: ImageFacts,
    policy: ReviewPolicy | None,
    localises: bool,
) -> tuple[Qualification, list[ReviewReason]]:
    """One cell's pass (its logits [classes] and pooled features [K], K may be 0) -> its
    calibrated confidence and distribution check, and the reasons for a person to look at
    it: what the service answers, and what studies score."""
    quality = qualifier.qualify(
        logits, features if features.size else None, cell_missing=localises and cell_box is None
    )
    return quality, review_reasons(quality, cell_box, image, policy, localises)


def _at_edge(box: Box, image: ImageFacts) -> bool:
    """Whether the cell is cut by the image's edge (`CUT_SHAPE_RATIO`)."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    left_or_right = x0 < EDGE_MARGIN_PX or x1 > image.width - EDGE_MARGIN_PX
    top_or_bottom = y0 < EDGE_MARGIN_PX or y1 > image.height - EDGE_MARGIN_PX
    return (left_or_right and width < CUT_SHAPE_RATIO * height) or (
        top_or_bottom and height < CUT_SHAPE_RATIO * width
    )
