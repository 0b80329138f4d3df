"""One exception hierarchy for everything a client can get wrong, rendered by one handler."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServiceError(Exception):
    """Base: carries the HTTP status and a stable machine-readable code."""

    status_code = 400
    code = "bad_request"

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


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _describe_validation(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg')} (received {item.get('input')!r})")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as {"error": {"code", "message"}} with its status."""

    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message), error.status_code)

    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(InvalidParameter.code, _describe_validation(error)), 422
        )

    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(error.detail)), error.status_code, headers=error.headers
        )

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
