"""Request-scoped access to what the lifespan built."""

from __future__ import annotations

from fastapi import Request

from app.errors import NotReady
from app.service import InferenceService
from app.settings import Settings


def get_service(request: Request) -> InferenceService:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the model is not loaded yet; retry when /health/ready answers 200")
    return service


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings
