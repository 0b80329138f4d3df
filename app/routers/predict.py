from fastapi import APIRouter, Depends, Request

from app.dependencies import get_app_settings, get_service
from app.routers.openapi_bodies import ERRORS, image_body
from app.schemas import PredictResponse
from app.service import InferenceService
from app.settings import Settings
from app.uploads import read_images

router = APIRouter(tags=["inference"])


@router.post("/predict", response_model=PredictResponse, responses=ERRORS,
             openapi_extra=image_body(multiple=True))
async def predict(
    request: Request,
    service: InferenceService = Depends(get_service),
    settings: Settings = Depends(get_app_settings),
) -> PredictResponse:
    """Classify one or more images (repeat the multipart field `file` for a batch)."""
    images = await read_images(request, settings.max_upload_bytes, settings.max_batch_images)
    return await service.predict(images)
