"""Explanation methods, by public name."""

from model_core.explainers.base import CamMethod
from model_core.explainers.cam import Cam
from model_core.explainers.gradcam import GradCam
from model_core.explainers.gradcampp import GradCamPlusPlus
from model_core.explainers.layercam import LayerCam

METHODS: dict[str, CamMethod] = {
    method.name: method for method in (Cam(), GradCam(), GradCamPlusPlus(), LayerCam())
}

# Spellings that need no URL encoding.
METHOD_ALIASES = {"gradcampp": "gradcam++", "gradcam-pp": "gradcam++", "gradcam_pp": "gradcam++"}

__all__ = ["METHODS", "METHOD_ALIASES", "CamMethod"]
