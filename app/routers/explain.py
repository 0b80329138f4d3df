from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.dependencies import get_app_settings, get_service
from app.errors import InvalidParameter
from app.explainers import METHODS
from app.rendering import COLORMAPS
from app.routers.openapi_bodies import ERRORS, image_body
from app.schemas import ExplainResponse
from app.service import ExplainOptions, InferenceService
from app.settings import Settings
from app.uploads import read_images

router = APIRouter(tags=["inference"])

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}},
                      "description": "JSON, or the PNG itself with Accept: image/png"}}


@router.post("/explain", response_model=ExplainResponse, responses=ERRORS | PNG_RESPONSE,
             openapi_extra=image_body(multiple=False))
async def explain(
    request: Request,
    method: str = Query("gradcam", description=f"one of {sorted(METHODS)}"),
    target: str | None = Query(None, description="class label or index; default: predicted"),
    layer: str | None = Query(None, description="layer to explain; default: the manifest's"),
    alpha: float = Query(0.4, ge=0.0, le=1.0, description="overlay opacity"),
    threshold: float = Query(0.2, ge=0.0, le=1.0, description="heat below it is not painted"),
    colormap: str = Query("jet", description=f"one of {sorted(COLORMAPS)}"),
    output: Literal["overlay", "heatmap", "both"] = Query("both"),
    faithfulness: bool = Query(
        False, description="also score the map: the target's probability with only the "
        "hottest 20% of the image kept, and with it removed"),
    service: InferenceService = Depends(get_service),
    settings: Settings = Depends(get_app_settings),
):
    """Explain one image's prediction with a class-activation heat map."""
    if colormap.lower() not in COLORMAPS:
        raise InvalidParameter(
            f"unknown colormap {colormap!r}; expected one of {sorted(COLORMAPS)}"
        )
    images = await read_images(request, settings.max_upload_bytes, max_images=1)
    options = ExplainOptions(method, target, layer, alpha, threshold, colormap.lower(), output,
                             faithfulness)
    explanation = await service.explain(images[0], options)
    if "image/png" in request.headers.get("accept", ""):
        png = explanation.overlay_png or explanation.heatmap_png
        return Response(png, media_type="image/png")
    return explanation.response


