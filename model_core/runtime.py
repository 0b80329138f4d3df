"""The loaded model and its compiled forward and gradient functions (no HTTP here)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model_core.errors import DeviceFailure, OnnxUnusable, UnknownLayer
from model_core.inputs.transform import (
    FirstLook,
    PreparedImage,
    finish_frame,
    first_look,
    mean_of_views,
    mirror_views,
    mirrored,
    prepare_frame,
)
from model_core.onnx_forward import OnnxForward, OnnxMissing, OnnxRunFailed, parity_gap, probe
from model_core.store.entries import entry_dir, load_entry
from model_core.store.manifest import Manifest

log = logging.getLogger(__name__)
# What a pass raises when the device, not the input, is at fault: out of memory, a lost or
# reset GPU, a driver or runtime failure.
DEVICE_ERRORS = (
    tf.errors.ResourceExhaustedError,
    tf.errors.InternalError,
    tf.errors.UnavailableError,
)
TENSORFLOW, ONNXRUNTIME, AUTO = "tensorflow", "onnxruntime", "auto"


def configure_tensorflow() -> str:
    """Let TensorFlow grow GPU memory instead of taking it all; return the serving device."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth was set earlier
            pass
    return "GPU:0" if gpus else "CPU:0"


@dataclass
class Forward:
    """One forward pass: [N, ...] arrays, or one item's rows after `row`."""

    probabilities: np.ndarray  # [N, classes]
    logits: np.ndarray  # [N, classes], before the softmax
    features: np.ndarray  # [N, K] pooled activations of the manifest's feature layers

    def row(self, index: int) -> Forward:
        return Forward(self.probabilities[index], self.logits[index], self.features[index])


@dataclass
class Gradients:
    """What every explanation method starts from, for a batch."""

    activations: np.ndarray  # [N, h, w, K] of the explained layer
    gradients: np.ndarray  # d logit[target] / d activations, same shape
    probabilities: np.ndarray  # [N, classes]
    targets: np.ndarray  # [N] the class each map explains
    logits: np.ndarray  # [N, classes]
    features: np.ndarray  # [N, K] as in Forward


class ModelRuntime:
    """A model-store entry loaded once, with one compiled function per kind of pass."""

    def __init__(
        self,
        manifest: Manifest,
        model: keras.Model,
        directory: Path,
        device: str,
        feature_layers: list[str] | None = None,
    ):
        """`feature_layers` are pooled into `Forward.features`; by default the manifest's
        feature-distribution layers (calibration passes the layers it is about to fit)."""
        self.manifest, self.model, self.directory, self.device = manifest, model, directory, device
        height, width = manifest.input_size
        self._input_spec = tf.TensorSpec([None, height, width, 3], tf.float32)
        distribution = manifest.feature_distribution
        if feature_layers is None:
            feature_layers = list(distribution.layers) if distribution else []
        self._feature_layers = feature_layers
        outputs = self._outputs()
        flip_average = manifest.preprocessing.flip_average
        self._forward = tf.function(
            lambda x: answer(outputs, x, flip_average),
            input_signature=[self._input_spec],
        )
        self._gradient_fns: dict[str, tf.types.experimental.PolymorphicFunction] = {}
        self.load_seconds = 0.0
        self.failure: str | None = None  # why the device last failed a pass; None: healthy
        self.failed_at: float | None = None  # time.monotonic() of the first failure
        self.backend = TENSORFLOW  # what runs `forward`; gradients always run in TensorFlow
        self.backend_note: str | None = None  # why ONNX Runtime was wanted and not used
        self._onnx: OnnxForward | None = None
        # Told why, once per failed pass (the service logs it as an event).
        self.on_device_failure: Callable[[str], None] | None = None

    @classmethod
    def load(
        cls,
        store_dir: Path,
        name: str,
        version: int | None,
        backend: str = TENSORFLOW,
        refuse_bad_onnx: bool = False,
        onnx_spinning: bool = True,
        onnx_threads: int = 0,
    ) -> ModelRuntime:
        """Load, verify and warm an entry; `backend`, `onnx_spinning` and `onnx_threads` as
        in `use_backend`."""
        started = time.perf_counter()
        device = configure_tensorflow()
        directory = entry_dir(store_dir, name, version)
        manifest, model = load_entry(directory)
        runtime = cls(manifest, model, directory, device)
        runtime.use_backend(backend, refuse_bad_onnx, onnx_spinning, onnx_threads)
        runtime.warm_up()
        runtime.load_seconds = time.perf_counter() - started
        log.info(
            "loaded %s v%s from %s on %s with %s in %.2fs",
            manifest.name,
            manifest.version,
            directory,
            device,
            runtime.backend,
            runtime.load_seconds,
        )
        return runtime

    def use_backend(
        self,
        backend: str,
        refuse_bad_onnx: bool = False,
        onnx_spinning: bool = True,
        onnx_threads: int = 0,
    ) -> None:
        """Run `forward` through ONNX Runtime when `backend` is onnxruntime, or auto on a
        CPU, and the entry's `model.onnx` verifies and agrees with TensorFlow on a probe;
        otherwise stay on TensorFlow, noting why. A bad `model.onnx` raises OnnxUnusable
        instead when `refuse_bad_onnx` (a reload refuses such an entry). `onnx_spinning`:
        ONNX Runtime's threads spin between passes; `onnx_threads`: how many it runs a pass
        on, 0 one per CPU (`onnx_forward.session_options`)."""
        if backend == TENSORFLOW or (backend == AUTO and not self.device.startswith("CPU")):
            return
        try:
            onnx = OnnxForward.load(
                self.directory, self.manifest, self._feature_layers, onnx_spinning, onnx_threads
            )
            inputs = probe(self.manifest)
            gap = parity_gap(
                tuple(t.numpy() for t in self._forward(tf.constant(inputs))), onnx(inputs)
            )
            if gap is not None:
                raise OnnxUnusable(f"{self.directory / 'model.onnx'} is not this model: {gap}")
        except (OnnxMissing, OnnxUnusable) as error:
            if refuse_bad_onnx and isinstance(error, OnnxUnusable):
                raise
            self.backend_note = f"{error}; serving through TensorFlow"
            level = (
                logging.INFO
                if isinstance(error, OnnxMissing) and backend == AUTO
                else (logging.WARNING)
            )
            log.log(
                level, "%s v%s: %s", self.manifest.name, self.manifest.version, self.backend_note
            )
            return
        self._onnx, self.backend = onnx, ONNXRUNTIME

    def prepare(
        self, rgb: np.ndarray, um_per_px: float | None = None, max_cells: int = 1
    ) -> PreparedImage:
        """RGB [H, W, 3] of any size (`um_per_px` micrometres per pixel, where known) -> the
        model's float32 input [h, w, 3] and box in `rgb`'s pixels of each white cell (at most
        `max_cells`, largest first; one whole-frame input with box None when the manifest
        asks for no localisation or no cell was found), and the scale they were cut at."""
        return prepare_frame(
            rgb, self.manifest.input_size, self.manifest.preprocessing, um_per_px, max_cells
        )

    def first_look(
        self, rgb: np.ndarray, um_per_px: float | None = None, max_cells: int = 1
    ) -> FirstLook:
        """`prepare`'s first step: the colour normalised and the cells cut at the data set's
        field of view (model_core.inputs.transform.first_look)."""
        preprocessing = self.manifest.preprocessing
        return first_look(rgb, self.manifest.input_size, preprocessing, um_per_px, max_cells)

    def finish(self, look: FirstLook) -> PreparedImage:
        """`prepare`'s second step: the scale, and the cells cut at it."""
        return finish_frame(look, self.manifest.input_size, self.manifest.preprocessing)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """RGB [H, W, 3] of any size -> the model's float32 input [h, w, 3]."""
        return self.prepare(rgb).cells[0][0]

    @property
    def localises(self) -> bool:
        """Whether this model classifies the window around the white cell."""
        return self.manifest.preprocessing.localisation is not None

    def forward(self, inputs: np.ndarray) -> Forward:
        """Probabilities, logits and pooled features for a batch of preprocessed inputs."""
        with self._device_guard():
            if self._onnx is not None:
                return Forward(*self._onnx(inputs))
            return Forward(*(t.numpy() for t in self._forward(tf.convert_to_tensor(inputs))))

    @property
    def forward_function(self) -> tf.types.experimental.PolymorphicFunction:
        """The compiled TensorFlow forward pass ([None, h, w, 3] float32 -> probabilities,
        logits, pooled features): what `model.onnx` is exported from."""
        return self._forward

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities [N, classes] for a batch of preprocessed inputs."""
        return self.forward(inputs).probabilities

    def forward_each(self, inputs: list[np.ndarray]) -> list[Forward]:
        """The micro-batcher's entry: one forward pass for a list of inputs."""
        batch = self.forward(np.stack(inputs))
        return [batch.row(index) for index in range(len(inputs))]

    def gradients(self, inputs: np.ndarray, targets: np.ndarray, layer: str) -> Gradients:
        """One backward pass for a batch: each item's target logit w.r.t. `layer`; a target
        of -1 stands for the item's predicted class."""
        function = self._gradient_fn(layer)
        with self._device_guard():
            outputs = function(
                tf.convert_to_tensor(inputs), tf.convert_to_tensor(targets, tf.int32)
            )
            return Gradients(*(tensor.numpy() for tensor in outputs))

    @contextmanager
    def _device_guard(self) -> Iterator[None]:
        """Record a device failure (readiness reads `failure`) and raise it as DeviceFailure."""
        try:
            yield
        except (*DEVICE_ERRORS, OnnxRunFailed) as error:
            self.failure = f"{type(error).__name__} on {self.device}: {_summary(error)}"
            if self.failed_at is None:
                self.failed_at = time.monotonic()
            log.error("device failure: %s", self.failure)
            if self.on_device_failure is not None:
                self.on_device_failure(self.failure)
            raise DeviceFailure(f"the model cannot run: {self.failure}") from error

    def dense_weights(self) -> np.ndarray:
        """The logits layer's kernel [K, classes]: CAM's class weights."""
        return self.model.get_layer(self.manifest.layers.logits).kernel.numpy()

    def check_layer(self, layer: str) -> str:
        explainable = self.explainable_layers()
        if layer not in explainable:
            raise UnknownLayer(
                f"layer {layer!r} cannot be explained: explanations need a spatial "
                f"[N, h, w, channels] layer inside the network, one of {explainable}"
            )
        return layer

    def explainable_layers(self) -> list[str]:
        return [
            layer.name
            for layer in self.model.layers
            if len(layer.output.shape) == 4
            and not layer.name.endswith("_bn")
            and layer.name != "image"
        ]

    def _outputs(self, *extra_layers: str) -> keras.Model:
        """A model of the same layers answering [probabilities, logits, *feature layers,
        *extra_layers]."""
        return keras.Model(
            self.model.inputs,
            [
                self.model.output,
                self.model.get_layer(self.manifest.layers.logits).output,
                *(
                    self.model.get_layer(name).output
                    for name in (*self._feature_layers, *extra_layers)
                ),
            ],
        )

    def _gradient_fn(self, layer: str):
        if layer not in self._gradient_fns:
            extractor = self._outputs(layer)
            flip_average = self.manifest.preprocessing.flip_average

            @tf.function(input_signature=[self._input_spec, tf.TensorSpec([None], tf.int32)])
            def gradient_fn(inputs, targets):
                with tf.GradientTape() as tape:
                    *outputs, activations = extractor(inputs, training=False)
                    probabilities, logits, features = pooled_outputs(outputs)
                    view_logits = logits
                    if flip_average:  # the answer /predict gives; the maps explain this view
                        with tape.stop_recording():
                            other = extractor(mirrored(inputs), training=False)[1]
                            probabilities, logits = mean_of_views(logits, other)
                    predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
                    targets = tf.where(targets < 0, predicted, targets)
                    # Items are independent in inference mode, so the gradient of the sum
                    # is each item's own target-logit gradient (Grad-CAM differentiates y^c,
                    # the score before the softmax).
                    score = tf.reduce_sum(tf.gather(view_logits, targets, batch_dims=1))
                return (
                    activations,
                    tape.gradient(score, activations),
                    probabilities,
                    targets,
                    logits,
                    features,
                )

            self._gradient_fns[layer] = gradient_fn
        return self._gradient_fns[layer]

    def warm_up(self) -> None:
        """Trace and run every compiled function a request with default parameters can
        reach (the forward pass; the gradient at the explanation layer, which Grad-CAM and
        kin explain, and at the features layer, the only one CAM explains), so no first
        request traces a function on the TensorFlow thread while others wait."""
        height, width = self.manifest.input_size
        blank = np.zeros((1, height, width, 3), np.float32)
        self.predict(blank)
        layers = self.manifest.layers
        for layer in dict.fromkeys((layers.explanation, layers.features)):
            self.gradients(blank, np.zeros(1, np.int32), layer)


def answer(
    outputs: keras.Model, inputs: tf.Tensor, flip_average: bool
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The model's answer (probabilities, logits, pooled features) for a batch. With
    `flip_average` (the manifest's test-time augmentation) each input is also run mirrored
    left to right, in the same pass: probabilities and logits as `mean_of_views` (a
    temperature and the argmax then apply to the averaged answer), the features the
    unmirrored view's (what the out-of-distribution distribution was fitted on)."""
    if not flip_average:
        return pooled_outputs(outputs(inputs, training=False))
    count = tf.shape(inputs)[0]
    _, logits, features = pooled_outputs(outputs(mirror_views(inputs), training=False))
    return (*mean_of_views(logits[:count], logits[count:]), features[:count])


def pooled_outputs(outputs) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(probabilities, logits, *feature maps) -> (probabilities, logits, pooled features).

    The one definition of the features behind the out-of-distribution flag: calibration
    fits their distribution through `ModelRuntime.forward` and serving measures them the
    same way, so the two cannot drift."""
    probabilities, logits, *feature_maps = outputs
    pooled = [tf.reduce_mean(maps, axis=[1, 2]) for maps in feature_maps]
    features = tf.concat(pooled, axis=1) if pooled else tf.zeros([tf.shape(logits)[0], 0])
    return probabilities, logits, features


def _summary(error: Exception) -> str:
    """The line of a TensorFlow error that says what went wrong, not where it was traced."""
    message = error.message if isinstance(error, tf.errors.OpError) else str(error)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    said = [
        line
        for line in lines
        if not line.startswith(
            ("Graph execution error", "Detected at node", "File ", "Hint:", "[[", "[Op:")
        )
    ]
    line = (said or lines or [type(error).__name__])[-1]
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)[:300]
