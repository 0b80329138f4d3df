"""The ASGI app: `uvicorn app.main:app`."""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import asynccontextmanager

import cv2
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.api.dependencies import get_service
from app.api.routes import admin, explain, health, metrics, models, page, predict, v2
from app.core.auth import ApiKeys, require_admin_key, require_api_key
from app.core.errors import install_error_handlers
from app.core.logs import log_event
from app.core.memory import cap_malloc_arenas, return_free_heap, return_free_heap_every
from app.core.middleware import ObserveRequests
from app.core.prometheus import Metrics
from app.core.settings import Settings, get_settings
from app.engine.admission import (
    Admission,
    AdmitModelWork,
    HoldRefusedConnections,
    ModelWorkRoutes,
)
from app.engine.model_manager import ModelManager


def create_app(settings: Settings | None = None) -> FastAPI:
    """Wire settings, routers, access control, observability, error handling and the
    model's lifespan into one app."""
    settings = settings or get_settings()
    # Each decode, localisation and render runs in a thread of its own on a small image:
    # OpenCV's own thread pool only competes with those threads for the cores.
    cv2.setNumThreads(1)
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)  # process-wide
    cap_malloc_arenas(settings.malloc_arenas)  # before the runtimes' and our threads start
    api_keys = ApiKeys.from_settings(settings)  # a bad key file stops start-up here
    app_metrics = Metrics()
    model_manager = ModelManager(settings, app_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await model_manager.start()
        return_free_heap()  # what loading, verifying and warming the model freed
        trimming = (
            asyncio.create_task(return_free_heap_every(settings.heap_trim_interval_s))
            if settings.heap_trim_interval_s > 0
            else None
        )
        stop_handling_sighup = model_manager.reload_on_sighup()
        if not api_keys.configured:
            log_event(
                "api_open",
                logging.WARNING,
                message="no API key is configured: every "
                "route is open and /admin is disabled (set WBC_API_KEY to close them)",
            )
        try:
            yield
        finally:
            stop_handling_sighup()
            if trimming is not None:
                trimming.cancel()
            await model_manager.close()

    app = FastAPI(
        title="White-blood-cell classifier with explanations",
        description="Classify stained blood-smear images (EOSINOPHIL, LYMPHOCYTE, MONOCYTE, "
        "NEUTROPHIL) and explain predictions with CAM, Grad-CAM, Grad-CAM++ and LayerCAM.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.api_keys = api_keys
    app.state.models = model_manager
    app.state.admission = admission = Admission.from_settings(settings, app_metrics)
    # Innermost of the middlewares: a refusal still gets CORS headers, a request id and a log line.
    # Filled from the routes' own queue declarations once the routers are included (below).
    model_work_routes = ModelWorkRoutes()
    app.add_middleware(
        AdmitModelWork,
        admission=admission,
        routes=model_work_routes,
        default_timeout_s=settings.request_timeout_s,
        authenticate=api_keys.check_headers,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    # Added after the admission, so outside it: it sees every answer, CORS preflights and
    # 401s included.
    app.add_middleware(
        ObserveRequests,
        metrics=app_metrics,
        current_model=lambda: (
            None if model_manager.service is None else model_manager.service.model_ref
        ),
    )
    # Outermost: a refused request's answer is logged and counted as it goes out; only the
    # next request of a connection refused again waits.
    app.add_middleware(HoldRefusedConnections, hold_s=settings.retry_after_s)
    install_error_handlers(app)
    # The page and its examples are open: the page asks for a key when the API needs one.
    open_routers = (health.router, v2.health_router, metrics.router, page.router)
    keyed_routers = (models.router, predict.router, explain.router, v2.router)
    for router in open_routers:
        app.include_router(router)
    for router in keyed_routers:
        app.include_router(router, dependencies=[Depends(require_api_key)])
    app.include_router(admin.router, dependencies=[Depends(require_admin_key)])
    # Routers are included without a prefix, so their own routes match as the app's do;
    # routes declared on the app itself are among its own.
    model_work_routes.collect(
        [
            *app.routes,
            *(
                route
                for router in (*open_routers, *keyed_routers, admin.router)
                for route in router.routes
            ),
        ],
        admission.queues,
        service_dependency=get_service,
    )
    return app


app = create_app()
