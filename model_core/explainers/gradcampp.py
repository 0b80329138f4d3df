"""Grad-CAM++: Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual
Explanations for Deep Convolutional Networks", WACV 2018."""

import numpy as np

from model_core.explainers.base import CamMethod
from model_core.runtime import Gradients, ModelRuntime


class GradCamPlusPlus(CamMethod):
    name = "gradcam++"

    def combine(
        self, gradients: Gradients, targets: np.ndarray, runtime: ModelRuntime
    ) -> np.ndarray:
        grads, activations = gradients.gradients, gradients.activations
        grads_2, grads_3 = grads**2, grads**3
        # Eq. (19) with Y = exp(S): alpha_ij^kc = g^2 / (2 g^2 + sum_ab A_ab^k g^3)
        denominator = 2 * grads_2 + activations.sum(axis=(1, 2), keepdims=True) * grads_3
        alpha = np.where(grads != 0, grads_2 / np.where(denominator != 0, denominator, 1), 0)
        # Eq. (10): w_k^c = sum_ij alpha_ij^kc ReLU(dY^c / dA_ij^k)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2))
        return np.einsum("nhwk,nk->nhw", activations, weights)
