from fastapi import APIRouter

from app.api.dependencies import ModelsDep
from app.core.schemas import HealthResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthResponse)
async def live() -> HealthResponse:
    """Liveness: the process answers HTTP."""
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
