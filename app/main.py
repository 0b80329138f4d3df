"""The ASGI app: `uvicorn app.main:app`."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.errors import install_error_handlers
from app.routers import explain, health, models, predict
from app.runtime import ModelRuntime
from app.service import InferenceService
from app.settings import Settings, get_settings

log = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Wire settings, routers, error handling and the model's lifespan into one app."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = await asyncio.to_thread(
            ModelRuntime.load, settings.store_dir, settings.model_name, settings.model_version
        )
        app.state.service = InferenceService(runtime, settings)
        try:
            yield
        finally:
            service, app.state.service = app.state.service, None
            await service.close()

    app = FastAPI(
        title="White-blood-cell classifier with explanations",
        description="Classify stained blood-smear images (EOSINOPHIL, LYMPHOCYTE, MONOCYTE, "
        "NEUTROPHIL) and explain predictions with CAM, Grad-CAM, Grad-CAM++ and LayerCAM.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = None
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    install_error_handlers(app)
    for router in (health.router, models.router, predict.router, explain.router):
        app.include_router(router)
    return app


app = create_app()
