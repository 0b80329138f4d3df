"""LayerCAM: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021."""

import numpy as np

from model_core.explainers.base import CamMethod
from model_core.runtime import Gradients, ModelRuntime


class LayerCam(CamMethod):
    name = "layercam"

    def combine(
        self, gradients: Gradients, targets: np.ndarray, runtime: ModelRuntime
    ) -> np.ndarray:
        # Eq. (5)-(6): M^c = ReLU(sum_k ReLU(dy^c / dA_ij^k) * A_ij^k), a weight per location.
        return (np.maximum(gradients.gradients, 0) * gradients.activations).sum(axis=3)
