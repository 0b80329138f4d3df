"""Classification and explanation as plain Python: decode, batch, run, render (no HTTP)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import astuple, dataclass
from time import perf_counter

import numpy as np

from app.admission import EXPLAIN, FORWARD
from app.batching import MicroBatcher
from app.errors import InvalidParameter
from app.images import decode_image
from app.logs import log_event
from app.metrics import Metrics
from app.schemas import (
    ExplainMethodsResponse,
    ExplainOptions,
    ExplainResponse,
    Faithfulness,
    MethodExplanation,
    ModelRef,
    Prediction,
    PredictResponse,
    Target,
)
from app.settings import Settings
from app.worker import LaneWorker
from model_core.explainers import METHOD_ALIASES, METHODS, CamMethod
from model_core.faithfulness import KEEP_FRACTION, heat_at_input, keep_and_remove
from model_core.qualify import PredictionQualifier
from model_core.rendering import encode_png, heatmap_png, overlay, upsample
from model_core.runtime import ONNXRUNTIME, Forward, Gradients, ModelRuntime


@dataclass
class Explanation:
    response: ExplainResponse
    overlay_png: bytes | None
    heatmap_png: bytes | None


@dataclass
class _ExplainItem:
    inputs: np.ndarray
    target: int  # -1: the predicted class
    methods: list[CamMethod]  # each turns the item's one backward pass into its own map


@dataclass
class _MapResult:
    heatmaps: dict[str, np.ndarray]  # method -> [h, w] in [0, 1] at the layer's resolution
    seconds: dict[str, float]  # method -> time spent turning the shared pass into its map
    forward: Forward  # the same pass's outputs for this item
    target: int


@dataclass
class _MethodMap:
    """One method's map of one image, ready to render."""

    method: CamMethod
    layer: str
    heatmap: np.ndarray
    seconds: float


@dataclass
class _ImageMaps:
    """One upload decoded once, its shared passes' outputs and each method's map."""

    image: np.ndarray  # the upload, RGB at its own size
    model_input: np.ndarray
    forward: Forward
    target: int
    maps: list[_MethodMap]


class InferenceService:
    """Serves one loaded model: every model pass goes through a micro-batcher into a
    single TensorFlow worker thread, so the event loop never runs TensorFlow."""

    def __init__(self, runtime: ModelRuntime, settings: Settings,
                 metrics: Metrics | None = None) -> None:
        self.runtime, self.settings = runtime, settings
        self.metrics = metrics or Metrics()
        runtime.on_device_failure = self._log_device_failure
        # One thread runs every pass; forward passes and explanations wait in lanes of their
        # own, taken in turn (app.admission bounds how many wait).
        self._executor = LaneWorker((FORWARD, EXPLAIN), thread_name="tensorflow")
        self._predict_batcher: MicroBatcher[np.ndarray, Forward] = self._batcher(
            self.runtime.forward_each, "inference"
        )
        self.qualifier = PredictionQualifier(runtime.manifest)
        # Rendering holds full-size copies of the upload: bound how many run at once.
        self._render_slots = asyncio.Semaphore(2)
        self._explain_batchers: dict[str, MicroBatcher[_ExplainItem, _MapResult]] = {}

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(name=self.runtime.manifest.name, version=self.runtime.manifest.version)

    async def predict(self, encoded_images: list[bytes]) -> PredictResponse:
        passes = await self._forward(encoded_images)
        return PredictResponse(
            model=self.model_ref, predictions=[self._prediction(p) for p in passes]
        )

    async def probabilities(self, encoded_images: list[bytes]) -> list[np.ndarray]:
        """Class probabilities of each encoded image, in order."""
        return [one.probabilities for one in await self._forward(encoded_images)]

    async def _forward(self, encoded_images: list[bytes]) -> list[Forward]:
        return await self._forward_each(
            encoded_images, lambda encoded: decode_image(encoded, self.settings.max_image_pixels))

    async def probabilities_of_pixels(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities of RGB pixel arrays [H, W, 3] (uint8, or float 0..255) of any
        size, through the same preprocessing and micro-batcher as encoded images."""
        return [one.probabilities for one in await self._forward_each(images, lambda i: i)]

    async def _forward_each(self, sources: list, to_rgb: Callable) -> list[Forward]:
        """Turn each source into RGB and a model input off the loop, then batch the passes."""
        def prepare(source) -> np.ndarray:
            with self.metrics.stage("decode"):
                return self.runtime.preprocess(to_rgb(source))

        with self._predict_batcher.expecting(len(sources)):
            inputs = await asyncio.gather(*(asyncio.to_thread(prepare, s) for s in sources))
            return await asyncio.gather(*(self._predict_batcher.submit(i) for i in inputs))

    async def explain(self, encoded_image: bytes, options: ExplainOptions) -> Explanation:
        done = await self._maps(encoded_image, [self._method(options.method)], options)
        (found,) = done.maps
        evidence = None
        if options.faithfulness:
            evidence = await self._faithfulness(done, found.heatmap)
        overlay_bytes, heatmap_bytes, _ = await self._render_timed(done.image, found, options)
        response = ExplainResponse(
            model=self.model_ref,
            prediction=self._prediction(done.forward),
            method=found.method.name,
            layer=found.layer,
            target=self._target(done.forward, done.target),
            image_size=(done.image.shape[1], done.image.shape[0]),
            overlay_png=_b64(overlay_bytes),
            heatmap_png=_b64(heatmap_bytes),
            faithfulness=evidence,
        )
        return Explanation(response, overlay_bytes, heatmap_bytes)

    async def explain_methods(self, encoded_image: bytes,
                              options: ExplainOptions) -> ExplainMethodsResponse:
        """Several methods (`options.method`: names separated by commas, or "all") of one
        upload: one decode, and one backward pass per distinct layer that all methods on
        that layer share; then each method's own map, PNGs and faithfulness."""
        methods = self.methods_of(options.method)
        started = perf_counter()
        done = await self._maps(encoded_image, methods, options)
        passes_seconds = perf_counter() - started

        async def one(found: _MethodMap) -> MethodExplanation:
            evidence = None
            if options.faithfulness:
                evidence = await self._faithfulness(done, found.heatmap)
            overlay_bytes, heatmap_bytes, seconds = await self._render_timed(
                done.image, found, options)
            return MethodExplanation(
                method=found.method.name, layer=found.layer, overlay_png=_b64(overlay_bytes),
                heatmap_png=_b64(heatmap_bytes), faithfulness=evidence,
                latency_ms=1000.0 * (found.seconds + seconds))

        explanations = await asyncio.gather(*(one(found) for found in done.maps))
        return ExplainMethodsResponse(
            model=self.model_ref, prediction=self._prediction(done.forward),
            target=self._target(done.forward, done.target),
            image_size=(done.image.shape[1], done.image.shape[0]),
            passes_ms=1000.0 * passes_seconds, explanations=explanations)

    def methods_of(self, spec: str) -> list[CamMethod]:
        """"all", or method names separated by commas (aliases allowed, repeats dropped),
        in the order given."""
        if spec.strip().lower() == "all":
            return [METHODS[name] for name in sorted(METHODS)]
        names = [part for part in spec.split(",") if part.strip()]
        if not names:
            raise InvalidParameter(f"method={spec!r} names no method; expected names of "
                                   f"{sorted(METHODS)} separated by commas, or 'all'",
                                   code="unknown_method")
        methods = [self._method(name) for name in names]
        return list({method.name: method for method in methods}.values())

    async def _maps(self, encoded_image: bytes, methods: list[CamMethod],
                    options: ExplainOptions) -> _ImageMaps:
        """Decode once, run one backward pass per distinct layer of `methods` (through that
        layer's micro-batcher), and turn it into each method's map, in the order given."""
        layers = {method.name: method.layer_for(options.layer, self.runtime)
                  for method in methods}
        target = self._resolve_target(options.target)
        by_layer: dict[str, list[CamMethod]] = {}
        for method in methods:
            by_layer.setdefault(layers[method.name], []).append(method)
        batchers = [self._explain_batcher(layer) for layer in by_layer]
        with ExitStack() as expecting:
            for batcher in batchers:
                expecting.enter_context(batcher.expecting(1))
            image, model_input = await self._decode(encoded_image)
            results = await asyncio.gather(*(
                batcher.submit(_ExplainItem(model_input, target, layer_methods))
                for batcher, layer_methods in zip(batchers, by_layer.values(), strict=True)))
        result_of = {method.name: result for result, layer_methods in
                     zip(results, by_layer.values(), strict=True) for method in layer_methods}
        maps = [_MethodMap(method, layers[method.name],
                           result_of[method.name].heatmaps[method.name],
                           result_of[method.name].seconds[method.name]) for method in methods]
        return _ImageMaps(image, model_input, results[0].forward, results[0].target, maps)

    def _explain_batcher(self, layer: str) -> MicroBatcher[_ExplainItem, _MapResult]:
        batcher = self._explain_batchers.get(layer)
        if batcher is None:
            batcher = self._explain_batchers[layer] = self._batcher(
                lambda items: self._explain_batch(items, layer), "explanation"
            )
        return batcher

    async def _render_timed(self, image: np.ndarray, found: _MethodMap,
                            options: ExplainOptions) -> tuple[bytes | None, bytes | None, float]:
        async with self._render_slots:
            with self.metrics.stage("encode"):
                started = perf_counter()
                overlay_bytes, heatmap_bytes = await asyncio.to_thread(
                    self._render, image, found.heatmap, options
                )
                return overlay_bytes, heatmap_bytes, perf_counter() - started

    def _target(self, forward: Forward, target: int) -> Target:
        return Target(label=self.runtime.manifest.class_names[target], class_index=target,
                      probability=float(forward.probabilities[target]))

    async def close(self) -> None:
        await self._predict_batcher.close()
        for batcher in self._explain_batchers.values():
            await batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _log_device_failure(self, failure: str) -> None:
        manifest = self.runtime.manifest
        log_event("device_failure", logging.ERROR, model=manifest.name,
                  version=manifest.version, device=self.runtime.device, error=failure)

    def _batcher(self, run_batch, stage: str) -> MicroBatcher:
        settings = self.settings
        # Forward passes are sized for their backend: ONNX Runtime is cheapest per image
        # in small batches (settings.onnx_max_pass_images).
        lane, max_size = FORWARD, (settings.onnx_max_pass_images
                                   if self.runtime.backend == ONNXRUNTIME
                                   else settings.max_pass_images)
        if stage == "explanation":  # short passes: a forward pass never waits long behind one
            lane, max_size = EXPLAIN, min(settings.max_pass_images,
                                          settings.max_explain_pass_images)
        return MicroBatcher(run_batch, self._executor.lane(lane), max_size,
                            self.settings.batch_max_wait_ms / 1000.0,
                            self.metrics.batch_observer(stage))

    async def _decode(self, encoded: bytes) -> tuple[np.ndarray, np.ndarray]:
        def decode_and_preprocess() -> tuple[np.ndarray, np.ndarray]:
            with self.metrics.stage("decode"):
                image = decode_image(encoded, self.settings.max_image_pixels)
                return image, self.runtime.preprocess(image)

        return await asyncio.to_thread(decode_and_preprocess)

    async def _faithfulness(self, done: _ImageMaps, heatmap: np.ndarray) -> Faithfulness:
        """The target's probability with only the hottest 20% of the input kept, and with it
        removed (blurred): two more forward passes, batched together."""
        heat = heat_at_input(heatmap, self.runtime.manifest.input_size)
        kept, removed = keep_and_remove(done.model_input, heat, KEEP_FRACTION)
        target = done.target
        with self._predict_batcher.expecting(2):
            passes = await asyncio.gather(self._predict_batcher.submit(kept),
                                          self._predict_batcher.submit(removed))
        return Faithfulness(
            fraction=KEEP_FRACTION,
            target_probability=float(done.forward.probabilities[target]),
            top_kept_probability=float(passes[0].probabilities[target]),
            top_removed_probability=float(passes[1].probabilities[target]),
        )

    def _explain_batch(self, items: list[_ExplainItem], layer: str) -> list[_MapResult]:
        gradients = self.runtime.gradients(
            np.stack([item.inputs for item in items]),
            np.array([item.target for item in items], np.int32), layer,
        )
        results = []
        for index, item in enumerate(items):
            own = Gradients(*(value[index : index + 1] for value in astuple(gradients)))
            heatmaps, seconds = {}, {}
            for method in item.methods:
                started = perf_counter()
                heatmaps[method.name] = method.heatmaps(own, own.targets, self.runtime)[0]
                seconds[method.name] = perf_counter() - started
            forward = Forward(own.probabilities[0], own.logits[0], own.features[0])
            results.append(_MapResult(heatmaps, seconds, forward, int(own.targets[0])))
        return results

    def _render(self, image: np.ndarray, heatmap: np.ndarray,
                options: ExplainOptions) -> tuple[bytes | None, bytes | None]:
        full = upsample(heatmap, image.shape[1], image.shape[0])
        overlay_bytes = heatmap_bytes = None
        if options.output in ("overlay", "both"):
            overlay_bytes = encode_png(
                overlay(image, full, options.colormap, options.alpha, options.threshold)
            )
        if options.output in ("heatmap", "both"):
            heatmap_bytes = heatmap_png(full)
        return overlay_bytes, heatmap_bytes

    def _method(self, name: str) -> CamMethod:
        # An unencoded "+" in a query string arrives as a space: "gradcam++" -> "gradcam  ".
        name = name.lower().replace(" ", "+")
        method = METHODS.get(METHOD_ALIASES.get(name, name))
        if method is None:
            raise InvalidParameter(
                f"unknown method {name!r}; expected one of {sorted(METHODS)}",
                code="unknown_method",
            )
        return method

    def _resolve_target(self, target: str | None) -> int:
        """A label (any case) or a class index -> class index; None -> -1 (predicted)."""
        if target is None or target == "":
            return -1
        names = self.runtime.manifest.class_names
        if target.isascii() and target.lstrip("-").isdigit():
            index = int(target)
            if 0 <= index < len(names):
                return index
        else:
            upper = [name.upper() for name in names]
            if target.upper() in upper:
                return upper.index(target.upper())
        raise InvalidParameter(
            f"unknown target {target!r}; expected a label of {names} or an index "
            f"0..{len(names) - 1}", code="unknown_target",
        )

    def _prediction(self, forward: Forward) -> Prediction:
        names = self.runtime.manifest.class_names
        probabilities = forward.probabilities
        index = int(np.argmax(probabilities))
        features = forward.features if forward.features.size else None
        quality = self.qualifier.qualify(forward.logits, features)
        return Prediction(
            label=names[index], class_index=index, confidence=float(probabilities[index]),
            probabilities={name: float(p) for name, p in zip(names, probabilities, strict=True)},
            calibrated_confidence=quality.calibrated_confidence,
            in_distribution=quality.in_distribution, ood_distance=quality.ood_distance,
            ood_reason=quality.ood_reason,
        )


def _b64(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")
