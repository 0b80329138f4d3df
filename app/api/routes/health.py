from fastapi import APIRouter

from app.api.dependencies import ModelsDep
from app.core.errors import NotLive
from app.core.schemas import HealthResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get(
    "/live",
    response_model=HealthResponse,
    responses={
        503: {
            "description": "the model has failed on its device for longer than "
            "WBC_LIVENESS_GRACE_S: restart the process"
        }
    },
)
async def live(models: ModelsDep) -> HealthResponse:
    """Liveness: the process answers HTTP, and its model has not stayed failed on its device
    past the grace (WBC_LIVENESS_GRACE_S, 60 s by default); a loading model is alive."""
    reason = models.liveness()
    if reason is not None:
        raise NotLive(reason)
    return HealthResponse(status="live")


@router.get(
    "/ready",
    response_model=HealthResponse,
    responses={
        503: {
            "description": "model not loaded, not warmed up, or its device "
            "failed (the message says which)"
        }
    },
)
async def ready(models: ModelsDep) -> HealthResponse:
    """Readiness: the model is loaded, warmed up and its device works."""
    return HealthResponse(status="ready", model=models.ready_service().model_ref)
