"""CAM: Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016."""

import numpy as np

from model_core.explainers.base import FixedLayerMethod
from model_core.runtime import Gradients, ModelRuntime


class Cam(FixedLayerMethod):
    name = "cam"

    def combine(
        self, gradients: Gradients, targets: np.ndarray, runtime: ModelRuntime
    ) -> np.ndarray:
        class_weights = runtime.dense_weights()[:, targets].T  # [N, K]
        # Eq. (2): M_c(x, y) = sum_k w_k^c f_k(x, y)
        return np.einsum("nhwk,nk->nhw", gradients.activations, class_weights)
