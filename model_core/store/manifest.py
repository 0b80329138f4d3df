"""The manifest schema: what a model-store entry promises to whoever loads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.keras"
WEIGHTS_FILE = "model.weights.h5"
ONNX_FILE = "model.onnx"
REPORTS_DIR = "reports"  # for people: serving ignores it, and it carries no checksum
SCHEMA_VERSION = 1
# Fields that earlier entries of schema 1 wrote and nothing reads: dropped when read, so
# those entries still load under the strict (extra="forbid") schema.
RETIRED_FIELDS = {"preprocessing": ("color_mode",), "layers": ("probabilities",)}


class Localisation(BaseModel):
    """How the white cell is found and the classification window cut around it
    (model_core.inputs.localisation): groups of a nucleus-colour mask, the largest first."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["nucleus-hsv"] = "nucleus-hsv"
    working_width: int = Field(320, ge=16)
    """The image is resized to this width (aspect kept) to find the cell; the window is cut
    from the full-resolution image."""
    hue_min: int = Field(105, ge=0, le=180)
    """Nucleus hue range in OpenCV's HSV (0..180)..."""
    hue_max: int = Field(165, ge=0, le=180)
    saturation_min: int = Field(70, ge=0, le=255)
    """...and the least saturation and value (0..255) of a nucleus pixel."""
    value_min: int = Field(40, ge=0, le=255)
    open_size: int = Field(3, ge=1)
    """Side of the square morphological opening (removes specks), then..."""
    close_size: int = Field(7, ge=1)
    """...of the closing (joins a nucleus's lobes)."""
    min_area_fraction: float = Field(0.005, ge=0, le=1)
    """A cell's nucleus covers at least this share of the data set's frame (an area in um^2)."""
    rival_area_ratio: float = Field(0.9, gt=0)
    """Read from entries of before every cell was found (v1-v8), and no longer used: a second
    nucleus of like size meant no single cell, and the whole frame was classified."""
    red_cell_radius_px: float = Field(24.89, gt=0)
    """The data set's typical red-cell radius at the working width (measured once on the
    train originals by training/studies/scale_report.py): the ruler an image's own red cells
    are read against to measure its scale (model_core.inputs.scale)."""
    lobe_gap_um: float = Field(1.5, ge=0)
    """Nucleus pieces closer than this (micrometres) are one cell's (a neutrophil's lobes)."""
    box_margin: float = Field(0.15, ge=0)
    """The reported cell box is the nucleus box grown by this share of its size per side."""
    window: int = Field(112, ge=8)
    """Side of the square window around the cell, in pixels at the working width."""


class WhiteBalance(BaseModel):
    """Scale each channel so the image's background (the glass) matches the data set's
    (model_core.inputs.colour), before anything else; no glass found: the image unchanged."""

    model_config = ConfigDict(extra="forbid")

    reference_rgb: tuple[float, float, float]
    """The data set's background colour, measured on its train originals."""
    bright_fraction: float = Field(0.3, gt=0, le=1)
    """The background is the median colour of this brightest share of pixels."""
    min_level: float = Field(120.0, ge=0, le=255)
    """A background whose brightest channel is darker than this is not glass."""
    max_chroma: float = Field(0.25, ge=0, le=1)
    """...nor one whose channels differ by more than this share of the brightest."""
    max_gain: float = Field(1.6, ge=1)
    """...nor one that needs a channel gain beyond this (or below its inverse)."""


class StainRange(BaseModel):
    """The stain colour of the data set's train frames, as their red cells show it once
    white-balanced (model_core.inputs.colour.red_cells_stain): an image whose red cells lie
    outside it was stained unlike anything the model learnt from, and its answers are
    flagged for review (`stain_unfamiliar`). Not a step of the transform: nothing changes
    the image."""

    model_config = ConfigDict(extra="forbid")

    hue: tuple[float, float]
    """The red cells' median hue (OpenCV's units, 0-180, written -90..90 about red)..."""
    saturation: tuple[float, float]
    """...and median saturation (0-255): each between these quantiles of the frames'."""
    quantiles: tuple[float, float]
    measured_on: str


class Preprocessing(BaseModel):
    """How an RGB uint8 image becomes the model's input tensor."""

    model_config = ConfigDict(extra="forbid")

    resize_method: Literal["bilinear", "area", "bicubic", "nearest"] = "bilinear"
    """`tf.image.resize` method used to reach `input_size` (aspect ratio is not kept)."""
    antialias: bool = False
    """`tf.image.resize` antialias flag."""
    scale: float = 1.0 / 255.0
    """Pixels are multiplied by this after resizing..."""
    offset: float = 0.0
    """...and then this is added, so uint8 input lands in [0, 1] by default."""
    localisation: Localisation | None = None
    """Find the white cell and classify the window around it; None: the whole frame (v1-v3).
    When no single cell is found the whole frame is classified, and the caller is told."""
    flip_average: bool = False
    """Test-time augmentation: the model also sees its input mirrored left to right and
    answers the mean of the two softmax outputs (`model_core.runtime.answer`); False: one
    view (v1-v6)."""
    white_balance: WhiteBalance | None = None
    """Balance each image by its background first (before the cell is found); None: off
    (v1-v8)."""
    stain_range: StainRange | None = None
    """Read each balanced image's stain from its red cells and flag it when outside this
    range; None: not read (v1-v8, and v9 until it was measured)."""


class Layers(BaseModel):
    """Names of the model's layers that serving needs, so nobody looks them up by hand."""

    model_config = ConfigDict(extra="forbid")

    explanation: str
    """Default layer whose activations Grad-CAM and kin explain."""
    features: str
    """The last convolutional block, the input of global average pooling (CAM's layer)."""
    logits: str
    """The dense layer whose output is the class scores before the softmax."""


class Framework(BaseModel):
    tensorflow: str
    keras: str


class Calibration(BaseModel):
    """Temperature scaling fitted on held-out data: calibrated p = softmax(logits / T)."""

    temperature: float = Field(gt=0)
    fitted_on: str


class ReviewPolicy(BaseModel):
    """When an answer goes to a person (`model_core.review`): a calibrated confidence below
    `min_calibrated_confidence` is `low_confidence`. The threshold is the lowest that kept
    `target_accuracy` on the accepted answers of held-out train originals."""

    model_config = ConfigDict(extra="forbid")

    min_calibrated_confidence: float = Field(ge=0, le=1)
    target_accuracy: float = Field(gt=0, le=1)
    """The accuracy asked of the accepted answers where the threshold was fitted."""
    expected_coverage: float = Field(ge=0, le=1)
    """The share of answers accepted there."""
    expected_accuracy: float = Field(ge=0, le=1)
    """The accuracy of those accepted answers."""
    fitted_on: str
    """Which answers: held-out train originals, never the test originals."""


class FeatureDistribution(BaseModel):
    """Where the training images' pooled features lie, to flag inputs unlike them:
    d(x) = sqrt((f(x) - mean)^T precision (f(x) - mean)), the Mahalanobis distance of f(x),
    the globally average-pooled activations of `layers` concatenated; d above `threshold`
    is out of distribution."""

    layers: list[str]
    mean: list[float]
    precision: list[list[float]]
    threshold: float = Field(gt=0)
    threshold_quantile: float
    fitted_on: str


class OnnxExport(BaseModel):
    """`model.onnx`: the serving forward pass exported for ONNX Runtime (its SHA-256 is in
    `artefacts`). Input `inputs` [N, h, w, 3] float32 (already preprocessed); outputs
    `probabilities` and `logits` [N, classes] and `features` [N, K]."""

    model_config = ConfigDict(extra="forbid")

    feature_layers: list[str]
    """Layers whose globally average-pooled activations `features` concatenates, in order."""
    opset: int
    exporter: str
    """The converter and its version, e.g. "tf2onnx 1.17.0"."""


class Manifest(BaseModel):
    """Everything the service needs to know about one trained model version."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    created_at: datetime
    class_names: list[str] = Field(min_length=2)
    """Class labels in the order of the model's output units."""
    input_size: tuple[int, int]
    """Model input (height, width) in pixels."""
    preprocessing: Preprocessing = Preprocessing()
    layers: Layers
    framework: Framework
    training: dict[str, Any] = {}
    """The training configuration that produced the weights."""
    metrics: dict[str, Any] = {}
    """Evaluation results keyed by split (e.g. "test", "test_simple")."""
    calibration: Calibration | None = None
    feature_distribution: FeatureDistribution | None = None
    review: ReviewPolicy | None = None
    """The confidence below which an answer is flagged for review; None: only the other
    reasons flag (v1-v8 before it was fitted)."""
    onnx: OnnxExport | None = None
    """Present when the entry also holds `model.onnx`; entries without it serve through
    TensorFlow."""
    artefacts: dict[str, str] = {}
    """SHA-256 hex digest of each artefact file, keyed by file name."""

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for section, names in RETIRED_FIELDS.items():
                if isinstance(data.get(section), dict):
                    data[section] = {k: v for k, v in data[section].items() if k not in names}
        return data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
