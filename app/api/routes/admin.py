from fastapi import APIRouter, Query

from app.api.dependencies import ModelsDep
from app.core.schemas import ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        401: {"description": "missing or wrong API key"},
        403: {"description": "admin routes are disabled: no API key is configured"},
        409: {"description": "the version failed to load or verify; the old one keeps serving"},
    },
)
async def reload(
    models: ModelsDep,
    version: int | None = Query(
        None,
        ge=1,
        description="default: the pinned version (WBC_MODEL_VERSION), else the newest in the store",
    ),
) -> ReloadResponse:
    """Load, verify and warm a model version, then swap it in without dropping requests."""
    return await models.reload(version)
