"""The forward pass in process: per-image cost against batch size for each backend, the
machine's float32 matmul peak, and the forward's achieved GFLOP/s.

    python -m bench.forward [--batches 1,2,4,8,16,32] [--seconds 0.5]

Prints a Markdown table; `bench.run` records the same in its results."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_core.runtime import ONNXRUNTIME, TENSORFLOW, ModelRuntime  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32)
MATMUL_SIDE = 1024


@dataclass
class CurvePoint:
    backend: str
    batch: int
    ms_per_image: float
    """Median over the timed passes of the pass's time over its batch size."""
    gflops: float
    """The model's FLOPs per image over `ms_per_image`."""


@dataclass
class ForwardReport:
    mflop_per_image: float
    """2 x the multiply-adds of the convolutions and dense layers, one image."""
    matmul_peak_gflops: dict[str, float]
    """Float32 [1024 x 1024] @ [1024 x 1024], best of several, by library."""
    tensorflow_load_seconds: float
    """Load, verify and warm the entry under TensorFlow (the first load in the process)."""
    onnx_added_seconds: float
    """What switching that loaded entry to ONNX Runtime adds: importing it, verifying
    model.onnx, opening the session and the parity probe."""
    curve: list[CurvePoint]


def model_mflop(model: keras.Model) -> float:
    """Multiply-adds x 2 of every Conv2D and Dense layer for one image, in millions."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            flops += 2 * height * width * kernel_h * kernel_w * channels_in * channels_out
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return flops / 1e6


def matmul_peak_gflops(seconds: float) -> dict[str, float]:
    """Best float32 GEMM rate of TensorFlow and of NumPy's BLAS on this machine."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = (rng.random((MATMUL_SIDE, MATMUL_SIDE), dtype=np.float32) for _ in range(2))
    ta, tb = tf.constant(a), tf.constant(b)
    flop = 2 * MATMUL_SIDE**3
    rates = {"tensorflow": lambda: tf.linalg.matmul(ta, tb).numpy(), "numpy": lambda: a @ b}
    return {name: flop / _best_seconds(call, seconds) / 1e9 for name, call in rates.items()}


def forward_curve(
    runtime: ModelRuntime, batches: tuple[int, ...], seconds: float, mflop: float
) -> list[CurvePoint]:
    rng = np.random.default_rng(0)
    height, width = runtime.manifest.input_size
    points = []
    for batch in batches:
        inputs = rng.random((batch, height, width, 3), dtype=np.float32)
        ms = _median_seconds(lambda inputs=inputs: runtime.forward(inputs), seconds) * 1e3
        per_image = ms / batch
        points.append(CurvePoint(runtime.backend, batch, per_image, mflop / per_image))
    return points


def measure_forward(
    store_dir: Path, model_name: str, batches: tuple[int, ...] = BATCHES, seconds: float = 0.5
) -> ForwardReport:
    """Load the newest entry under each backend, then time each at every batch size."""
    reference = ModelRuntime.load(store_dir, model_name, None, TENSORFLOW)
    onnx = ModelRuntime.load(store_dir, model_name, None, TENSORFLOW)
    started = time.perf_counter()
    onnx.use_backend(ONNXRUNTIME)
    added = time.perf_counter() - started
    if onnx.backend != ONNXRUNTIME:
        raise SystemExit(f"bench: cannot time ONNX Runtime: {onnx.backend_note}")
    # An entry that averages the input with its mirror runs the network twice per image.
    views = 2 if reference.manifest.preprocessing.flip_average else 1
    mflop = views * model_mflop(reference.model)
    curve = [
        point
        for runtime in (onnx, reference)
        for point in forward_curve(runtime, batches, seconds, mflop)
    ]
    return ForwardReport(
        mflop_per_image=mflop,
        matmul_peak_gflops=matmul_peak_gflops(seconds),
        tensorflow_load_seconds=reference.load_seconds,
        onnx_added_seconds=added,
        curve=curve,
    )


def markdown(report: ForwardReport) -> str:
    peak = max(report.matmul_peak_gflops.values())
    lines = [
        f"Forward pass: {report.mflop_per_image:.1f} MFLOP per image; float32 matmul "
        "peak "
        + ", ".join(f"{name} {rate:.1f}" for name, rate in report.matmul_peak_gflops.items())
        + f" GFLOP/s. Cold load under TensorFlow {report.tensorflow_load_seconds:.2f} s;"
        f" ONNX Runtime adds {report.onnx_added_seconds:.2f} s.",
        "",
        "| backend | batch | ms per image | GFLOP/s | % of peak |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for point in report.curve:
        lines.append(
            f"| {point.backend} | {point.batch} | {point.ms_per_image:.2f} | "
            f"{point.gflops:.1f} | {100 * point.gflops / peak:.0f}% |"
        )
    cheapest = {}
    for point in sorted(report.curve, key=lambda p: p.ms_per_image):
        cheapest.setdefault(point.backend, point.batch)
    lines += [
        "",
        "Cheapest per image: "
        + ", ".join(f"{backend} at batch {batch}" for backend, batch in cheapest.items())
        + " (WBC_ONNX_MAX_PASS_IMAGES and WBC_MAX_PASS_IMAGES cap the passes of each).",
    ]
    return "\n".join(lines)


def _median_seconds(call: Callable[[], object], seconds: float) -> float:
    call()
    durations = []
    deadline = time.perf_counter() + seconds
    while len(durations) < 5 or time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def _best_seconds(call: Callable[[], object], seconds: float) -> float:
    call()
    best, deadline, runs = float("inf"), time.perf_counter() + seconds, 0
    while runs < 5 or time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        best, runs = min(best, time.perf_counter() - started), runs + 1
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forward", description=__doc__)
    parser.add_argument("--store-dir", type=Path, default=Path("model_store"))
    parser.add_argument("--model-name", default="wbc-squeezenet")
    parser.add_argument(
        "--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.5,
        help="time spent per batch size and backend (at least 5 passes)",
    )
    args = parser.parse_args(argv)
    batches = tuple(int(part) for part in args.batches.split(","))
    report = measure_forward(args.store_dir, args.model_name, batches, args.seconds)
    print(markdown(report))


if __name__ == "__main__":
    main()
