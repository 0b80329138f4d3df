"""One exception hierarchy for everything a client can get wrong, rendered by one handler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.paths import route_path
from model_core.errors import DeviceFailure, ModelCoreError, ScaleOutOfReach, UnknownLayer


class ServiceError(Exception):
    """Base: carries the HTTP status and a stable machine-readable code."""

    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidImage(ServiceError):
    status_code = 400
    code = "invalid_image"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidParameter(ServiceError):
    status_code = 422
    code = "invalid_parameter"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class NotReady(ServiceError):
    status_code = 503
    code = "not_ready"


class ModelUnavailable(NotReady):
    """The model failed on its device (out of memory, device lost): readiness turns false."""

    code = "model_unavailable"


class NotLive(ServiceError):
    """The process should be restarted: its model failed on its device and stayed failed
    past the liveness grace."""

    status_code = 503
    code = "device_failed"


class Overloaded(ServiceError):
    """The queue for this kind of work is full: refused at once, before the body is read."""

    status_code = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before it was answered; a model pass it was still
    queued for never runs."""

    status_code = 504
    code = "deadline_exceeded"


class NotAcceptable(ServiceError):
    """The Accept header asks for a representation this answer does not have."""

    status_code = 406
    code = "not_acceptable"


class ClientDisconnected(ServiceError):
    """The client went away while its request waited; nobody reads this answer (499, as
    nginx logs it)."""

    status_code = 499
    code = "client_disconnected"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="wbc-explain"'}


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class ReloadFailed(ServiceError):
    """A new model version could not be loaded; the old one keeps serving."""

    status_code = 409
    code = "reload_failed"


def from_core(error: ModelCoreError) -> ServiceError:
    """The HTTP face of a model-core exception."""
    if isinstance(error, UnknownLayer):
        return InvalidParameter(error.message, code="unknown_layer")
    if isinstance(error, DeviceFailure):
        return ModelUnavailable(error.message)
    if isinstance(error, ScaleOutOfReach):
        return InvalidParameter(error.message, code="invalid_scale")
    return ServiceError(error.message, code="model_error")


# Open Inference Protocol routes answer errors in the protocol's own shape.
V2_PREFIX = "/v2"


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def describe_validation(errors: Sequence[Any]) -> str:
    """Pydantic's error list as one line: where, what, and what was received."""
    parts = []
    for item in errors:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg')} (received {item.get('input')!r})")
    return "; ".join(parts) or "invalid request"


def _render(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    path = route_path(request.scope)
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        # The protocol's $inference_error_response; it knows 400, not FastAPI's 422.
        return JSONResponse({"error": message}, 400 if status == 422 else status, headers)
    return JSONResponse(error_body(code, message), status, headers)


def error_response(request: Request, error: ServiceError) -> JSONResponse:
    """The answer to `error`: its status, headers and body in the route's shape."""
    return _render(request, error.status_code, error.code, error.message, error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error (the service's own, the model core's as `from_core` maps them) as
    {"error": {"code", "message"}} with its status, or as
    {"error": message} on the Open Inference Protocol's /v2 routes."""

    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return error_response(request, error)

    async def core_error(request: Request, error: ModelCoreError) -> JSONResponse:
        return await service_error(request, from_core(error))

    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        message = describe_validation(error.errors())
        return _render(request, 422, InvalidParameter.code, message)

    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _render(request, error.status_code, code, str(error.detail), error.headers)

    app.add_exception_handler(ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(ModelCoreError, core_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
