"""The in-process floor: what one image costs with no HTTP, no queue and no framework,
decoded the way the service decodes and run through the service's own forward pass (the
backend WBC_FORWARD_BACKEND picks, as the service under test does)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.images import decode_image
from app.settings import Settings
from model_core.runtime import ModelRuntime

WARMUP_CALLS = 10


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


def measure_floor(store_dir: Path, model_name: str, encoded_images: list[bytes],
                  samples: int) -> Floor:
    """Time `samples` images end to end through decode and forward, then the forward alone."""
    settings = Settings()
    runtime = ModelRuntime.load(store_dir, model_name, None, settings.forward_backend)

    def decode_and_forward(index: int) -> object:
        rgb = decode_image(encoded_images[index % len(encoded_images)],
                           settings.max_image_pixels)
        return runtime.forward(runtime.preprocess(rgb)[None])

    preprocessed = runtime.preprocess(decode_image(encoded_images[0],
                                                   settings.max_image_pixels))[None]
    return Floor(
        decode_and_forward_ms=_median_ms(decode_and_forward, samples),
        forward_ms=_median_ms(lambda _: runtime.forward(preprocessed), samples),
        samples=samples, backend=runtime.backend,
    )


def _median_ms(call: Callable[[int], object], samples: int) -> float:
    for index in range(WARMUP_CALLS):
        call(index)
    durations_ms = []
    for index in range(samples):
        started = time.perf_counter()
        call(index)
        durations_ms.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(durations_ms)
