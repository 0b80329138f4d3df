"""The forward pass under ONNX Runtime: an entry's `model.onnx`, verified and loaded with
session options sized for this machine. TensorFlow stays the reference: `check_parity`
compares the two on a fixed probe before ONNX Runtime may serve."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from model_core.errors import OnnxUnusable
from model_core.store.entries import ChecksumMismatch, verify_artefact
from model_core.store.manifest import ONNX_FILE, Manifest

INPUT_NAME = "inputs"
OUTPUT_NAMES = ("probabilities", "logits", "features")
# Largest difference allowed between the backends, relative to each output's largest value
# (absolute for probabilities, which are at most 1).
PARITY_TOLERANCE = 1e-5
PROBE_IMAGES = 1
SPINNING_KEY = "session.intra_op.allow_spinning"


class OnnxMissing(Exception):
    """Nothing to run: the entry has no `model.onnx`, or ONNX Runtime is not installed."""


class OnnxRunFailed(Exception):
    """ONNX Runtime failed a pass (the runtime treats it as a device failure)."""


class OnnxForward:
    """One ONNX Runtime session answering (probabilities, logits, features) for a batch."""

    def __init__(self, session, keep_features: bool, load_seconds: float) -> None:
        self._session, self._keep_features = session, keep_features
        self.load_seconds = load_seconds
        options = session.get_session_options()
        self.threads = options.intra_op_num_threads
        self.spinning = options.get_session_config_entry(SPINNING_KEY) == "1"

    @classmethod
    def load(
        cls,
        directory: Path,
        manifest: Manifest,
        feature_layers: list[str],
        spinning: bool = True,
        threads: int = 0,
    ) -> OnnxForward:
        """Verify `model.onnx` against the manifest and open it. OnnxMissing when there is
        none to use; OnnxUnusable, saying why, when it is there but corrupt or not this
        model's. `feature_layers` are the layers the caller pools (none: features unused);
        `spinning` and `threads` as in `session_options`."""
        started = time.perf_counter()
        export = manifest.onnx
        if export is None or ONNX_FILE not in manifest.artefacts:
            raise OnnxMissing(f"the entry in {directory} has no {ONNX_FILE}")
        try:
            import onnxruntime
        except ImportError:
            raise OnnxMissing("onnxruntime is not installed") from None
        if feature_layers and export.feature_layers != feature_layers:
            raise OnnxUnusable(
                f"{ONNX_FILE} pools the features of {export.feature_layers}; the manifest's "
                f"feature distribution needs {feature_layers}: export it again"
            )
        try:
            path = verify_artefact(directory, manifest, ONNX_FILE)
        except ChecksumMismatch as error:
            raise OnnxUnusable(str(error)) from None
        try:
            session = onnxruntime.InferenceSession(
                str(path),
                session_options(onnxruntime, spinning, threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as error:  # ONNX Runtime raises its own types for a bad file
            raise OnnxUnusable(f"ONNX Runtime cannot load {path}: {error}") from None
        _check_signature(session, manifest, path)
        return cls(session, bool(feature_layers), time.perf_counter() - started)

    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            probabilities, logits, features = self._session.run(
                OUTPUT_NAMES, {INPUT_NAME: np.ascontiguousarray(inputs, np.float32)}
            )
        except Exception as error:  # inputs are checked before a pass: the runtime failed
            raise OnnxRunFailed(_what_failed(str(error))) from error
        if not self._keep_features:
            features = features[:, :0]
        return probabilities, logits, features


def session_options(onnxruntime, spinning: bool = True, threads: int = 0):
    """Intra-op threads: `threads`, or with 0 one per CPU this process may run on (ONNX
    Runtime's own default counts the host's cores, more than a container may use); the
    service runs one (WBC_ONNX_THREADS), so a pass holds one core while the image work of
    the next requests runs on the others. With more than one, they spin (unless `spinning`
    is off) between operators and for a moment after a pass. Without spinning the second
    thread sleeps between requests and waking it cost ~0.9 ms per pass (96x96 v6 at
    batch 1 on the 2-core development machine: 1.80 ms back to back, 2.67 ms after 4 ms
    idle; spinning 1.35 / 1.54 ms). In four paired runs with the benchmark's client-free
    load generator (docs/benchmarks.md) spinning answered /predict at concurrency 1
    1.0-3.1 ms sooner and /v2 infer at concurrency 16 within -5% to +8% of the requests/s
    without it. (It was off until then: with a load generator that itself took ~1.7 ms of
    CPU per request, the spinning threads competed with the client and lost ~15% at
    concurrency 16.) Operators run one at a time."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    # No arena of its own and no per-shape memory plans: ONNX Runtime would otherwise keep
    # the peak of its passes (passes of 1-8 images: +65 MiB at rest, +37 MiB with the plans
    # alone) where the service's periodic heap trim cannot give it back; the passes cost
    # ~10% more (2-core development machine, docs/benchmarks.md).
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.inter_op_num_threads = 1
    options.add_session_config_entry(SPINNING_KEY, "1" if spinning else "0")
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def probe(manifest: Manifest) -> np.ndarray:
    """Fixed pseudo-random preprocessed images [PROBE_IMAGES, h, w, 3]: any other model
    answers them differently."""
    height, width = manifest.input_size
    pixels = np.random.default_rng(0).uniform(0, 255, (PROBE_IMAGES, height, width, 3))
    spec = manifest.preprocessing
    return (pixels * spec.scale + spec.offset).astype(np.float32)


def parity_gap(reference: tuple[np.ndarray, ...], candidate: tuple[np.ndarray, ...]) -> str | None:
    """None when every output agrees within PARITY_TOLERANCE; otherwise which does not."""
    for name, expected, actual in zip(OUTPUT_NAMES, reference, candidate, strict=True):
        if expected.shape != actual.shape:
            return f"{name} has shape {list(actual.shape)}, TensorFlow's {list(expected.shape)}"
        gap = float(np.max(np.abs(expected - actual), initial=0.0))
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        if gap > PARITY_TOLERANCE * scale:
            return (
                f"{name} differs from TensorFlow's by up to {gap:.3g} (allowed "
                f"{PARITY_TOLERANCE * scale:.3g})"
            )
    return None


def _what_failed(message: str) -> str:
    """ONNX Runtime's status message without the source file and function it came from:
    "... Status Message: /src/bfc_arena.cc:360 void* f(size_t) Failed to allocate ..." ->
    "Failed to allocate ..."."""
    said = message.split("Status Message:")[-1].strip()
    return re.sub(r"^\S+:\d+ .*?\) ", "", said) or message


def _check_signature(session, manifest: Manifest, path: Path) -> None:
    inputs = [(tensor.name, tensor.shape[1:]) for tensor in session.get_inputs()]
    expected = [(INPUT_NAME, [*manifest.input_size, 3])]
    outputs = {tensor.name for tensor in session.get_outputs()}
    if inputs != expected or not outputs >= set(OUTPUT_NAMES):
        raise OnnxUnusable(
            f"{path} takes {inputs} and answers {sorted(outputs)}; this model takes "
            f"{expected} and answers {list(OUTPUT_NAMES)}"
        )
