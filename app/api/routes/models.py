from fastapi import APIRouter

from app.api.dependencies import ServiceDep
from app.core.schemas import ModelInfo, ModelsResponse, ReviewInfo
from model_core.explainers import METHODS
from model_core.review import REASONS

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsResponse)
def models(service: ServiceDep) -> ModelsResponse:
    """The served model: classes, input size, explanation layers and evaluation metrics."""
    runtime = service.runtime
    manifest = runtime.manifest
    return ModelsResponse(
        models=[
            ModelInfo(
                name=manifest.name,
                version=manifest.version,
                classes=manifest.class_names,
                input_size=manifest.input_size,
                explanation_layer=manifest.layers.explanation,
                explainable_layers=runtime.explainable_layers(),
                flip_average=manifest.preprocessing.flip_average,
                methods=sorted(METHODS),
                device=runtime.device,
                backend=runtime.backend,
                created_at=manifest.created_at.isoformat(),
                metrics=manifest.metrics,
                review=ReviewInfo(
                    reasons=REASONS,
                    **(manifest.review.model_dump() if manifest.review else {}),
                ),
            )
        ]
    )
