"""Request-scoped access to what the lifespan built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

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


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ModelsDep = Annotated[ModelManager, Depends(get_models)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
