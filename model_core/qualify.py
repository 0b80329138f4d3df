"""What a prediction is worth: calibrated confidence (temperature scaling) and whether the
image looks like the smears the model was trained on (Mahalanobis distance of its pooled
features), both fitted at training time and read from the manifest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_core.store.manifest import Manifest

NO_CELL_REASON = (
    "no single white cell was found (nothing stained like a nucleus of a cell's size), so the "
    "whole frame was classified; this model was trained on the window "
    "around one white cell, so treat the prediction with suspicion"
)


@dataclass
class Qualification:
    calibrated_confidence: float | None
    in_distribution: bool | None
    ood_distance: float | None
    ood_reason: str | None


class PredictionQualifier:
    """Reads the manifest's `calibration` and `feature_distribution` once; either may be
    absent (older entries), and then its fields are None."""

    def __init__(self, manifest: Manifest) -> None:
        self.temperature = manifest.calibration.temperature if manifest.calibration else None
        distribution = manifest.feature_distribution
        self.feature_layers = list(distribution.layers) if distribution else []
        if distribution is not None:
            self._mean = np.asarray(distribution.mean, np.float64)
            self._precision = np.asarray(distribution.precision, np.float64)
            self.threshold = distribution.threshold

    def qualify(
        self, logits: np.ndarray, features: np.ndarray | None, cell_missing: bool = False
    ) -> Qualification:
        """`cell_missing`: the model classifies the window around the white cell, and none
        was found, so it saw the whole frame, which it was never trained on."""
        calibrated = None
        if self.temperature is not None:
            scaled = logits / self.temperature
            scaled = np.exp(scaled - scaled.max())
            calibrated = float(scaled.max() / scaled.sum())
        if cell_missing:
            return Qualification(calibrated, False, None, NO_CELL_REASON)
        if features is None or not self.feature_layers:
            return Qualification(calibrated, None, None, None)
        centred = features.astype(np.float64) - self._mean
        distance = float(np.sqrt(max(float(centred @ self._precision @ centred), 0.0)))
        inside = distance <= self.threshold
        reason = (
            None
            if inside
            else (
                f"the image's pooled features ({', '.join(self.feature_layers)}) lie at "
                f"Mahalanobis distance {distance:.1f} from the training smears; the limit is "
                f"{self.threshold:.1f}: it does not look like a stained blood smear this model "
                "was trained on, so treat the prediction with suspicion"
            )
        )
        return Qualification(calibrated, inside, distance, reason)
