"""Request-scoped access to what the lifespan built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from app.admission import TIMEOUT_HEADER, Ticket, client_gone, request_timeout
from app.model_manager import ModelManager
from app.service import InferenceService
from app.settings import Settings


def get_models(request: Request) -> ModelManager:
    return request.app.state.models


async def get_service(request: Request) -> AsyncIterator[InferenceService]:
    """The served model's service, held for the whole request: a reload meanwhile swaps in
    the new version for later requests while this one finishes on the old."""
    with get_models(request).hold() as service:
        request.state.model = service.model_ref  # the version the request log names
        yield service


def admit(request: Request, service: InferenceService, queue: str) -> Ticket:
    """A place in `queue` for this request, taken before its body is read (503 overloaded
    when full), with its deadline (X-Request-Timeout, else the default) and its client's
    disconnect watched. Called in the route, so the place is freed before the answer goes
    out, and a closed-loop client never finds its own last request still counted."""
    timeout_s = request_timeout(request.headers.get(TIMEOUT_HEADER),
                                service.settings.request_timeout_s)
    return service.admission.admit(queue, timeout_s, lambda: client_gone(request.receive))


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ModelsDep = Annotated[ModelManager, Depends(get_models)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
