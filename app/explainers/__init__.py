"""Explanation methods, by public name."""

from app.explainers.base import CamMethod
from app.explainers.cam import Cam
from app.explainers.gradcam import GradCam
from app.explainers.gradcampp import GradCamPlusPlus
from app.explainers.layercam import LayerCam

METHODS: dict[str, CamMethod] = {
    method.name: method for method in (Cam(), GradCam(), GradCamPlusPlus(), LayerCam())
}

# Spellings that need no URL encoding.
METHOD_ALIASES = {"gradcampp": "gradcam++", "gradcam-pp": "gradcam++", "gradcam_pp": "gradcam++"}

__all__ = ["METHODS", "METHOD_ALIASES", "CamMethod"]
