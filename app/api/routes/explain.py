"""POST /explain: a class-activation heat map of one image's prediction, by one method or
several at once."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.dependencies import ExplainTicketDep, ServiceDep, SettingsDep
from app.api.json_answer import json_answer
from app.api.negotiation import accepts_png
from app.api.routes.openapi_bodies import ERRORS, image_body
from app.api.uploads import read_images
from app.core.errors import NotAcceptable
from app.core.schemas import ExplainMethodsResponse, ExplainOptions, ExplainResponse

router = APIRouter(tags=["inference"])

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}},
        "description": "JSON, or the PNG itself with Accept: image/png",
    }
}


@router.post(
    "/explain",
    response_model=ExplainResponse | ExplainMethodsResponse,
    responses=ERRORS | PNG_RESPONSE,
    openapi_extra=image_body(multiple=False),
)
async def explain(
    request: Request,
    options: Annotated[ExplainOptions, Query()],
    service: ServiceDep,
    settings: SettingsDep,
    ticket: ExplainTicketDep,
):
    """Explain one image's prediction with a class-activation heat map; with several methods
    (`method=gradcam,layercam` or `method=all`), one answer listing each method's map."""
    methods = request.query_params.getlist("method")
    if len(methods) > 1:  # method=a&method=b, as HTTP clients send a list: one list
        options = options.model_copy(update={"method": ",".join(methods)})
    wants_png = accepts_png(request.headers.get("accept"))
    if options.several_methods and wants_png:
        raise NotAcceptable(
            "several methods are answered as JSON only; ask for one method "
            "to get its picture with Accept: image/png"
        )
    images = await ticket.run(
        read_images(request, settings.max_upload_bytes, max_images=1), watch_client=False
    )
    if options.several_methods:
        return json_answer(
            await ticket.run(service.explanations.explain_methods(images[0], options))
        )
    explanation = await ticket.run(service.explanations.explain(images[0], options))
    if wants_png:
        png = explanation.overlay_png or explanation.heatmap_png
        return Response(png, media_type="image/png")
    return json_answer(explanation.response)
