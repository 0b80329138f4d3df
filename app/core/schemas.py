"""Request options and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from model_core.explainers import METHODS
from model_core.inputs.localisation import REFERENCE_UM_PER_PX
from model_core.rendering import COLORMAPS
from model_core.review import REASONS, ReviewReason

PIXEL_SIZE_LIMITS_UM = (0.01, 10.0)
PIXEL_SIZE_DESCRIPTION = (
    "micrometres per pixel of the uploaded image(s), where known (a calibrated camera; OME's "
    "PhysicalSizeX): the window around the cell is then cut at the size in micrometres the "
    "model was trained on. Unset: it is measured from the image's red cells (about 7.5 um "
    "across), or else assumed (the data set's field of view: a 320-pixel-wide frame at "
    f"{REFERENCE_UM_PER_PX} um per pixel; a tight crop: a cell of typical size)"
)


def pixel_size_field() -> Any:
    """The `pixel_size_um` option of /predict and /explain, declared once."""
    low, high = PIXEL_SIZE_LIMITS_UM
    return Field(None, ge=low, le=high, description=PIXEL_SIZE_DESCRIPTION)


class PredictOptions(BaseModel):
    """`/predict`'s query parameters."""

    pixel_size_um: float | None = pixel_size_field()


class ExplainOptions(BaseModel):
    """What the caller asked of an explanation: `/explain`'s query parameters, and the one
    place their defaults are stated."""

    method: str = Field(
        "gradcam",
        description=f"one of {sorted(METHODS)}; or several "
        "separated by commas, or `all`, for one answer listing each method",
    )
    target: str | None = Field(None, description="class label or index; default: predicted")
    pixel_size_um: float | None = pixel_size_field()
    cell: int = Field(
        0,
        ge=0,
        le=1000,
        description="which white cell to explain: its index in /predict's `cells` (0: the "
        "main, largest cell)",
    )
    layer: str | None = Field(None, description="layer to explain; default: the manifest's")
    alpha: float = Field(0.4, ge=0.0, le=1.0, description="overlay opacity")
    threshold: float = Field(0.2, ge=0.0, le=1.0, description="heat below it is not painted")
    colormap: str = Field("jet", description=f"one of {sorted(COLORMAPS)}")
    output: Literal["overlay", "heatmap", "both"] = "both"
    faithfulness: bool = Field(
        False,
        description="also score the map: the target's probability with only the "
        "hottest 20% of the image kept, and with it removed",
    )
    outline: bool = Field(
        False, description="draw the white cell's box (`cell_box`) on the overlay"
    )

    @property
    def several_methods(self) -> bool:
        """`method` lists methods ("a,b") or asks for all: the answer lists each one."""
        return "," in self.method or self.method.strip().lower() == "all"

    @field_validator("colormap")
    @classmethod
    def _known_colormap(cls, colormap: str) -> str:
        if colormap.lower() not in COLORMAPS:
            raise ValueError(f"unknown colormap {colormap!r}; expected one of {sorted(COLORMAPS)}")
        return colormap.lower()


class ModelRef(BaseModel):
    name: str
    version: int


class PixelScale(BaseModel):
    um_per_px: float = Field(description="micrometres per pixel of the uploaded image")
    source: Literal["given", "measured", "assumed"] = Field(
        description="given: the request's pixel_size_um; measured: from the image's red cells; "
        "assumed: nothing to measure it by (the data set's field of view, or for a tight crop "
        "a white cell of typical size)"
    )


class CellPrediction(BaseModel):
    """The answer for one white cell (or, where none was found, for the whole frame)."""

    label: str
    class_index: int
    confidence: float = Field(description="probability of the predicted class")
    probabilities: dict[str, float]
    calibrated_confidence: float | None = Field(
        None, description="confidence after temperature scaling fitted on held-out smears"
    )
    in_distribution: bool | None = Field(
        None, description="false when the image does not look like the training smears"
    )
    ood_distance: float | None = Field(
        None, description="Mahalanobis distance of the pooled features from the training set"
    )
    ood_reason: str | None = Field(None, description="why in_distribution is false")
    cell_box: list[int] | None = Field(
        None,
        description="[x0, y0, x1, y1] of the white cell in the uploaded image's pixels "
        "(x1, y1 exclusive); null when the whole frame was classified",
    )
    region: Literal["cell", "whole_frame"] = Field(
        "whole_frame",
        description="what was classified: the window around the white cell, "
        "or the whole frame (the model does not localise, or no single white cell was found)",
    )
    review: bool = Field(
        False,
        description="true: a person should look at this answer before it is used "
        "(`review_reasons` says why); false: it can be accepted as it is",
    )
    review_reasons: list[ReviewReason] = Field(
        default_factory=list,
        description="why `review` is true, empty when it is false: "
        + "; ".join(f"{key}: {text}" for key, text in REASONS.items()),
    )


class Prediction(CellPrediction):
    """One image's answer: the main (largest) white cell's fields, every cell in `cells`."""

    scale: PixelScale | None = Field(
        None, description="the image's scale the cell was found and its window cut at"
    )
    white_balance: Literal["applied", "no_background"] | None = Field(
        None,
        description="applied: the image was white-balanced by its background (the glass) to "
        "the training smears' before anything else, so a camera's colour cast and exposure "
        "are taken out; no_background: no glass was found (a tight crop), the image was used "
        "as it came; null: the model does not balance colour",
    )
    stain: Literal["familiar", "unfamiliar"] | None = Field(
        None,
        description="familiar: the image's red cells, once white-balanced, are stained within "
        "the range of the training frames (the middle 98%); unfamiliar: outside it, another "
        "lab's stain or protocol, so the answer is flagged stain_unfamiliar; null: the model "
        "does not read the stain, or too few red cells to read it by (a tight crop)",
    )
    cells: list[CellPrediction] = Field(
        default_factory=list,
        description="every white cell found, largest first (the first is the one the "
        "top-level fields answer for); empty when the whole frame was classified. "
        "/explain?cell=<index> explains one",
    )


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction] = Field(description="one per image, in request order")


class Target(BaseModel):
    label: str
    class_index: int
    probability: float


class Faithfulness(BaseModel):
    """The explanation's own evidence: does the heat carry the prediction?"""

    fraction: float = Field(description="share of the input kept or removed, by heat")
    target_probability: float = Field(description="target probability on the whole image")
    top_kept_probability: float = Field(
        description="target probability with only the hottest pixels kept (rest blurred)"
    )
    top_removed_probability: float = Field(
        description="target probability with the hottest pixels blurred away"
    )


class ExplainResponse(BaseModel):
    model: ModelRef
    prediction: Prediction
    method: str
    layer: str
    target: Target
    image_size: tuple[int, int] = Field(description="[width, height] of the uploaded image")
    cell_box: list[int] | None = Field(
        None,
        description="the white cell's box, as in `prediction.cell_box`: the heat map "
        "covers the window around it, placed back where it was cut from",
    )
    overlay_png: str | None = Field(None, description="base64 PNG: heat map over the image")
    heatmap_png: str | None = Field(
        None, description="base64 8-bit greyscale PNG: the normalised map at image size"
    )
    faithfulness: Faithfulness | None = Field(None, description="with ?faithfulness=true")


class MethodExplanation(BaseModel):
    """One method's map in an answer of several methods."""

    method: str
    layer: str
    overlay_png: str | None = Field(None, description="base64 PNG: heat map over the image")
    heatmap_png: str | None = Field(
        None, description="base64 8-bit greyscale PNG: the normalised map at image size"
    )
    faithfulness: Faithfulness | None = Field(None, description="with ?faithfulness=true")
    latency_ms: float = Field(
        description="this method's own work: its map from the shared pass, and its PNGs"
    )


class ExplainMethodsResponse(BaseModel):
    """`/explain?method=a,b` or `method=all`: one upload, decoded once, one backward pass per
    distinct layer shared by the methods on it, and one explanation per method."""

    model: ModelRef
    prediction: Prediction
    target: Target
    image_size: tuple[int, int] = Field(description="[width, height] of the uploaded image")
    cell_box: list[int] | None = Field(
        None, description="the white cell's box, as in `prediction.cell_box`"
    )
    passes_ms: float = Field(
        description="decoding the upload and the model passes the methods share"
    )
    explanations: list[MethodExplanation] = Field(
        description="one per method, in the order asked (`all`: alphabetical)"
    )


class ReviewInfo(BaseModel):
    """How this model decides that a person should look at an answer."""

    reasons: dict[ReviewReason, str] = Field(description="every reason an answer is flagged for")
    min_calibrated_confidence: float | None = Field(
        None, description="answers below it are `low_confidence`; null: not fitted"
    )
    target_accuracy: float | None = Field(
        None, description="the accuracy asked of accepted answers where it was fitted"
    )
    expected_coverage: float | None = Field(
        None, description="the share of answers accepted there (confidence alone)"
    )
    expected_accuracy: float | None = Field(
        None, description="the accuracy of those accepted answers"
    )
    fitted_on: str | None = None


class ModelInfo(BaseModel):
    name: str
    version: int
    classes: list[str]
    input_size: tuple[int, int] = Field(description="model input [height, width]")
    explanation_layer: str
    explainable_layers: list[str]
    flip_average: bool = Field(
        description="the answer is the mean of the probabilities of "
        "the model input and of its left-right mirror (test-time "
        "augmentation; the manifest's preprocessing.flip_average)"
    )
    methods: list[str]
    device: str
    backend: str = Field(
        description="what runs forward passes: tensorflow or onnxruntime "
        "(explanations always run in TensorFlow)"
    )
    created_at: str
    metrics: dict
    review: ReviewInfo


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["live", "ready"]
    model: ModelRef | None = None


class ReloadResponse(BaseModel):
    status: Literal["reloaded", "unchanged"]
    model: ModelRef = Field(description="the version serving now")
    previous: ModelRef = Field(description="the version that served before the reload")
