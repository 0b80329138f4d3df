"""Request-scoped access to what the lifespan built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from app.core.settings import Settings
from app.engine.admission import EXPLAIN, FORWARD, QueuePlace, Ticket
from app.engine.model_manager import ModelManager
from app.engine.service import InferenceService


# The dependencies are `async def` though they never wait: FastAPI runs a plain `def` one in
# its thread pool, a hop per dependency per request that, with the CPU busy, cost a
# refused request hundreds of milliseconds.
async def get_models(request: Request) -> ModelManager:
    return request.app.state.models


async def get_service(request: Request) -> AsyncIterator[InferenceService]:
    """The served model's service, held for the whole request: a reload meanwhile swaps in
    the new version for later requests while this one finishes on the old."""
    models: ModelManager = request.app.state.models
    with models.hold() as service:
        request.state.model = service.model_ref  # the version the request log names
        yield service


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ModelsDep = Annotated[ModelManager, Depends(get_models)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
# A route that does model work declares its queue by taking one of these: its place in that
# queue, taken by app.engine.admission.AdmitModelWork before routing (a refused request never
# gets here). The app refuses to start with a POST route that takes the service without one.
ForwardTicketDep = Annotated[Ticket, Depends(QueuePlace(FORWARD))]
ExplainTicketDep = Annotated[Ticket, Depends(QueuePlace(EXPLAIN))]
