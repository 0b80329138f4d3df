"""The in-process floor: what one image costs with no HTTP, no queue and no framework,
decoded the way the service decodes and run through the service's own forward pass (the
backend WBC_FORWARD_BACKEND picks, as the service under test does)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.settings import Settings
from app.engine.images import decode_image
from model_core.inputs.colour import red_cells_stain, white_balance
from model_core.inputs.localisation import find_cell
from model_core.runtime import ModelRuntime
from model_core.store.entries import list_versions
from model_core.store.manifest import WhiteBalance

WARMUP_CALLS = 10
# The last whole-frame model (128x128 input): the forward the crop model is held against.
REFERENCE_VERSION = 3


@dataclass
class Floor:
    """Median milliseconds per image, batch 1."""

    decode_and_forward_ms: float
    """PIL decode (the service's `decode_image`) + preprocessing + forward pass."""
    forward_ms: float
    """The forward pass alone, on an already preprocessed input."""
    samples: int
    backend: str
    """What ran the forward pass: tensorflow or onnxruntime."""
    decode_and_forward_cpu_ms: float | None = None
    """CPU milliseconds of this process per image of `decode_and_forward` (every thread:
    ONNX Runtime's own included), the mean over the samples: what 2 cores could answer at
    most is 2000 / this many images a second."""
    localise_ms: float | None = None
    """Finding the white cell alone (`find_cell`) in a decoded upload; None: the model does
    not localise."""
    prepare_ms: float | None = None
    """Finding the cell and cutting, resizing and scaling its window (`runtime.prepare`)."""
    white_balance_ms: float | None = None
    """White-balancing a decoded upload by its background (`model_core.inputs.colour`),
    measured whether or not the served model asks for it."""
    stain_read_ms: float | None = None
    """Reading a balanced upload's stain from its red cells (`red_cells_stain`, for the
    `stain_unfamiliar` flag), measured whether or not the served model asks for it."""
    version: int | None = None
    reference_forward_ms: float | None = None
    """The forward pass of REFERENCE_VERSION, same backend and batch, for comparison."""


def measure_floor(
    store_dir: Path, model_name: str, encoded_images: list[bytes], samples: int
) -> Floor:
    """Time `samples` images end to end through decode and forward, then the forward alone."""
    settings = Settings()
    runtime = ModelRuntime.load(
        store_dir,
        model_name,
        None,
        settings.forward_backend,
        onnx_spinning=settings.onnx_spinning,
        onnx_threads=settings.onnx_threads,
    )

    def decode_and_forward(index: int) -> object:
        rgb = decode_image(encoded_images[index % len(encoded_images)], settings.max_image_pixels)
        return runtime.forward(runtime.preprocess(rgb)[None])

    decoded = [decode_image(encoded, settings.max_image_pixels) for encoded in encoded_images]
    preprocessed = runtime.preprocess(decoded[0])[None]
    localisation = runtime.manifest.preprocessing.localisation
    cpu_started = time.process_time()
    decode_and_forward_ms = _median_ms(decode_and_forward, samples)
    cpu_ms = (time.process_time() - cpu_started) * 1000.0 / (samples + WARMUP_CALLS)
    floor = Floor(
        decode_and_forward_ms=decode_and_forward_ms,
        decode_and_forward_cpu_ms=cpu_ms,
        forward_ms=_median_ms(lambda _: runtime.forward(preprocessed), samples),
        samples=samples,
        backend=runtime.backend,
        version=runtime.manifest.version,
    )
    if localisation is not None:
        floor.localise_ms = _median_ms(
            lambda index: find_cell(decoded[index % len(decoded)], localisation), samples
        )
        floor.prepare_ms = _median_ms(
            lambda index: runtime.prepare(decoded[index % len(decoded)]), samples
        )
    balance = runtime.manifest.preprocessing.white_balance or WhiteBalance.model_validate(
        {"reference_rgb": (201.0, 203.0, 198.0)}
    )
    floor.white_balance_ms = _median_ms(
        lambda index: white_balance(decoded[index % len(decoded)], balance), samples
    )
    balanced = [white_balance(image, balance)[0] for image in decoded]
    floor.stain_read_ms = _median_ms(
        lambda index: red_cells_stain(balanced[index % len(balanced)]), samples
    )
    if runtime.manifest.version != REFERENCE_VERSION and REFERENCE_VERSION in list_versions(
        store_dir, model_name
    ):
        reference = ModelRuntime.load(
            store_dir,
            model_name,
            REFERENCE_VERSION,
            settings.forward_backend,
            onnx_spinning=settings.onnx_spinning,
            onnx_threads=settings.onnx_threads,
        )
        reference_input = reference.preprocess(decoded[0])[None]
        floor.reference_forward_ms = _median_ms(
            lambda _: reference.forward(reference_input), samples
        )
    return floor


def _median_ms(call: Callable[[int], object], samples: int) -> float:
    for index in range(WARMUP_CALLS):
        call(index)
    durations_ms = []
    for index in range(samples):
        started = time.perf_counter()
        call(index)
        durations_ms.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(durations_ms)
