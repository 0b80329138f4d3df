"""What every CAM method shares: one backward pass per batch, ReLU and normalisation.
A method overrides `combine`, which turns activations and gradients into raw maps."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from model_core.errors import UnknownLayer
from model_core.runtime import Gradients, ModelRuntime


class CamMethod:
    """Base class of the explanation methods."""

    name: ClassVar[str]
    fixed_layer: ClassVar[bool] = False
    """True for a method defined on one layer only: asked alone for another layer it
    refuses; among several methods it keeps its own layer."""

    def layer_for(self, requested: str | None, runtime: ModelRuntime) -> str:
        """The layer this method explains: the requested one, or the manifest's default."""
        return runtime.check_layer(requested or runtime.manifest.layers.explanation)

    def combine(
        self, gradients: Gradients, targets: np.ndarray, runtime: ModelRuntime
    ) -> np.ndarray:
        """Raw class-activation maps [N, h, w] (before ReLU and normalisation)."""
        raise NotImplementedError

    def heatmaps(
        self, gradients: Gradients, targets: np.ndarray, runtime: ModelRuntime
    ) -> np.ndarray:
        """Maps in [0, 1], [N, h, w]: ReLU keeps the evidence for the class, then each map is
        min-max scaled."""
        maps = np.maximum(self.combine(gradients, targets, runtime), 0.0)
        low = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - low
        return np.where(span > 1e-12, (maps - low) / np.maximum(span, 1e-12), 0.0).astype(
            np.float32
        )


class FixedLayerMethod(CamMethod):
    """A method defined only on the model's last convolutional block (the GAP input)."""

    fixed_layer = True

    def layer_for(self, requested: str | None, runtime: ModelRuntime) -> str:
        features = runtime.manifest.layers.features
        if requested not in (None, features):
            raise UnknownLayer(
                f"method {self.name!r} explains only the layer feeding global average "
                f"pooling, {features!r}; received layer={requested!r}"
            )
        return features
