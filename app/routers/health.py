from fastapi import APIRouter, Depends

from app.dependencies import get_service
from app.schemas import HealthResponse
from app.service import InferenceService

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthResponse)
def live() -> HealthResponse:
    """Liveness: the process answers HTTP."""
    return HealthResponse(status="live")


@router.get("/ready", response_model=HealthResponse,
            responses={503: {"description": "model not loaded or not warmed up"}})
def ready(service: InferenceService = Depends(get_service)) -> HealthResponse:
    """Readiness: the model is loaded and warmed up."""
    return HealthResponse(status="ready", model=service.model_ref)
