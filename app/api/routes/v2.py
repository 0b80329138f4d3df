"""Open Inference Protocol (KServe V2) REST routes, beside the service's own; errors here
take the protocol's {"error": "..."} shape (see app.core.errors)."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app import __version__
from app.api.dependencies import ForwardTicketDep, ModelsDep, ServiceDep, SettingsDep
from app.api.protocol.body import HEADER_LENGTH
from app.api.protocol.schemas import ModelMetadata, ServerMetadata
from app.api.protocol.tensors import (
    ENCODED,
    PIXEL_DATATYPES,
    PIXELS,
    encode_response,
    output_metadata,
    output_names,
    output_tensors,
    pixel_size_um,
    read_request,
    timeout_s,
)
from app.api.uploads import read_body
from app.core.errors import NotFound
from app.engine.service import InferenceService

TAGS: list = ["open inference protocol (v2)"]
router = APIRouter(prefix="/v2", tags=TAGS)
# Probes stay open when API keys are on, like /health.
health_router = APIRouter(prefix="/v2/health", tags=TAGS)
MODEL = "/models/{model_name}"
VERSION = MODEL + "/versions/{model_version}"


@health_router.get("/live", responses={400: {"description": "not live, and why"}})
async def server_live(models: ModelsDep) -> JSONResponse:
    """Server liveness: 200 while the process answers and its model has not stayed failed
    on its device past WBC_LIVENESS_GRACE_S; 400 (the protocol's "4xx is false") with the
    reason otherwise, as /health/live answers 503."""
    reason = models.liveness()
    if reason is not None:
        return JSONResponse({"live": False, "error": reason}, 400)
    return JSONResponse({"live": True})


@health_router.get("/ready", responses={400: {"description": "not ready, and why"}})
async def server_ready(models: ModelsDep) -> JSONResponse:
    """Server readiness: 200 once the model is loaded, warmed and its device works; 400
    (the protocol's "4xx is false") with the reason otherwise."""
    reason = models.readiness()
    if reason is not None:
        return JSONResponse({"ready": False, "error": reason}, 400)
    return JSONResponse({"ready": True})


@router.get("", response_model=ServerMetadata)
def server_metadata() -> ServerMetadata:
    """Server metadata: name, version and protocol extensions."""
    return ServerMetadata(
        name="wbc-explain", version=__version__, extensions=["binary_tensor_data"]
    )


@router.get(MODEL, response_model=ModelMetadata)
@router.get(VERSION, response_model=ModelMetadata)
def model_metadata(
    service: ServiceDep, model_name: str, model_version: str | None = None
) -> ModelMetadata:
    """Model metadata: its inputs (pixels or encoded images) and output (probabilities)."""
    _check_served(service, model_name, model_version)
    runtime = service.runtime
    manifest = runtime.manifest
    return ModelMetadata(
        name=manifest.name,
        versions=[str(manifest.version)],
        platform="tensorflow_keras",
        inputs=[PIXELS, ENCODED],
        outputs=output_metadata(manifest.num_classes, runtime.localises),
        parameters={
            "class_names": manifest.class_names,
            "device": runtime.device,
            "backend": runtime.backend,
            "pixel_datatypes": list(PIXEL_DATATYPES),
        },
    )


@router.get(MODEL + "/ready", responses={400: {"description": "not ready, and why"}})
@router.get(VERSION + "/ready", responses={400: {"description": "not ready, and why"}})
async def model_ready(
    models: ModelsDep, model_name: str, model_version: str | None = None
) -> JSONResponse:
    """Model readiness: 200 when this model (and version) can serve, 400 otherwise."""
    reason = models.readiness()
    if reason is None and models.service is not None:
        _check_served(models.service, model_name, model_version)
        return JSONResponse({"name": model_name, "ready": True})
    return JSONResponse({"name": model_name, "ready": False, "error": reason}, 400)


@router.post(MODEL + "/infer")
@router.post(VERSION + "/infer")
async def infer(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    ticket: ForwardTicketDep,
    model_name: str,
    model_version: str | None = None,
) -> Response:
    """Classify images sent as one tensor, in JSON or with the binary tensor data extension:
    `pixels` (UINT8 or FP32 0..255, [N, H, W, 3], any H and W) or `images` (BYTES [N] of
    encoded files, base64 in JSON). Answers FP32 `probabilities` [N, classes] and, from a
    model that finds the white cell, INT32 `cell_box` [N, 4] (x0, y0, x1, y1 in each
    image's pixels; -1s where the whole frame was classified)."""
    _check_served(service, model_name, model_version)
    body = await ticket.run(read_body(request, settings.max_upload_bytes), watch_client=False)
    inference, images = await asyncio.to_thread(
        read_request,
        body,
        request.headers.get(HEADER_LENGTH),
        settings,
        output_names(service.runtime.localises),
    )
    ticket.shorten(timeout_s(inference))
    um_per_px = pixel_size_um(inference)
    if images.encoded is not None:
        ticket.need(len(images.encoded))
        classified = await ticket.run(service.classify(images.encoded, um_per_px))
    else:
        ticket.need(len(images.pixels or []))
        classified = await ticket.run(service.classify_pixels(images.pixels or [], um_per_px))
    model = service.model_ref
    with service.metrics.stage("encode"):
        header, binary = encode_response(
            inference,
            output_tensors(classified, service.runtime.localises),
            model.name,
            model.version,
        )
    if binary is None:
        return Response(header, media_type="application/json")
    return Response(
        header + binary,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _check_served(service: InferenceService, model_name: str, model_version: str | None) -> None:
    served = service.model_ref
    if model_name != served.name:
        raise NotFound(
            f"model {model_name!r} is not served here; this server serves {served.name!r}"
        )
    if model_version is not None and model_version != str(served.version):
        raise NotFound(
            f"version {model_version!r} of model {model_name!r} is not served; "
            f"version {served.version} is (POST /admin/reload?version=N switches)"
        )
