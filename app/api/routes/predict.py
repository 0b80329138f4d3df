from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.dependencies import ForwardTicketDep, ServiceDep, SettingsDep
from app.api.json_answer import json_answer
from app.api.routes.openapi_bodies import ERRORS, image_body
from app.api.uploads import read_images
from app.core.schemas import PredictOptions, PredictResponse

router = APIRouter(tags=["inference"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=image_body(multiple=True),
)
async def predict(
    request: Request,
    options: Annotated[PredictOptions, Query()],
    service: ServiceDep,
    settings: SettingsDep,
    ticket: ForwardTicketDep,
) -> Response:
    """Classify one or more images (repeat the multipart field `file` for a batch)."""
    images = await ticket.run(
        read_images(request, settings.max_upload_bytes, settings.max_request_images),
        watch_client=False,
    )
    ticket.need(len(images))
    return json_answer(await ticket.run(service.predict(images, options.pixel_size_um)))
