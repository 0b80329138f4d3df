"""Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017."""

import numpy as np

from model_core.explainers.base import CamMethod
from model_core.runtime import Gradients, ModelRuntime


class GradCam(CamMethod):
    name = "gradcam"

    def combine(
        self, gradients: Gradients, targets: np.ndarray, runtime: ModelRuntime
    ) -> np.ndarray:
        # Eq. (1): alpha_k^c = 1/Z sum_ij dy^c / dA_ij^k
        alpha = gradients.gradients.mean(axis=(1, 2))
        # Eq. (2): ReLU(sum_k alpha_k^c A^k); the ReLU is applied by the base class.
        return np.einsum("nhwk,nk->nhw", gradients.activations, alpha)
