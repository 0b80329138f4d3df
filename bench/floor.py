"""The in-process floor: what one image costs with no HTTP, no queue and no framework,
decoded the way the service decodes and run through a compiled forward pass."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from app.images import decode_image
from app.settings import Settings
from model_store.preprocessing import to_model_input
from model_store.store import entry_dir, load_entry

WARMUP_CALLS = 10


@dataclass
class Floor:
    """Median milliseconds per image, batch 1."""

    decode_and_forward_ms: float
    """PIL decode (the service's `decode_image`) + `to_model_input` + compiled forward."""
    forward_ms: float
    """The compiled forward pass alone, on an already preprocessed input."""
    samples: int


def measure_floor(store_dir: Path, model_name: str, encoded_images: list[bytes],
                  samples: int) -> Floor:
    """Time `samples` images end to end through decode and forward, then the forward alone."""
    manifest, model = load_entry(entry_dir(store_dir, model_name))
    height, width = manifest.input_size
    forward = tf.function(lambda inputs: model(inputs, training=False),
                          input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32)])
    max_pixels = Settings().max_image_pixels

    def decode_and_forward(index: int) -> np.ndarray:
        rgb = decode_image(encoded_images[index % len(encoded_images)], max_pixels)
        inputs = to_model_input(rgb[None], manifest.input_size, manifest.preprocessing)
        return forward(inputs).numpy()

    preprocessed = to_model_input(decode_image(encoded_images[0], max_pixels)[None],
                                  manifest.input_size, manifest.preprocessing)
    return Floor(
        decode_and_forward_ms=_median_ms(decode_and_forward, samples),
        forward_ms=_median_ms(lambda _: forward(preprocessed).numpy(), samples),
        samples=samples,
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
