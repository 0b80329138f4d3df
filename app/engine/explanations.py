"""Explanations as plain Python (no HTTP): one upload decoded once, one backward pass per
distinct layer of the asked methods (micro-batched across requests on the service's one
model worker), each method's map from that pass, drawn over the whole upload."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import astuple, dataclass
from time import perf_counter
from typing import Any, Protocol

import numpy as np

from app.core.errors import InvalidParameter
from app.core.prometheus import Metrics
from app.core.schemas import (
    ExplainMethodsResponse,
    ExplainOptions,
    ExplainResponse,
    Faithfulness,
    MethodExplanation,
    ModelRef,
    Prediction,
    Target,
)
from app.core.settings import Settings
from app.engine.admission import EXPLAIN
from app.engine.batching import MicroBatcher
from app.engine.images import decode_image
from model_core.explainers import METHOD_ALIASES, METHODS, CamMethod
from model_core.faithfulness import KEEP_FRACTION, heat_at_input, keep_and_remove
from model_core.inputs.localisation import Box, Scale, place_in_frame
from model_core.rendering import (
    encode_png,
    heatmap_png,
    normalise,
    outline_box,
    overlay,
    upsample,
)
from model_core.review import ImageFacts
from model_core.runtime import Forward, Gradients, ModelRuntime


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
    cell_box: Box | None  # where the model input was cut from; None: the whole frame
    facts: ImageFacts  # its size, the scale the cell was found and cut at, its colour balance
    forward: Forward
    target: int
    maps: list[_MethodMap]


class Classifier(Protocol):
    """What the explanation side needs of the classification side (`InferenceService`),
    named here so that this module does not import the service that owns it."""

    runtime: ModelRuntime
    settings: Settings
    metrics: Metrics
    forward_batcher: MicroBatcher[np.ndarray, Forward]

    @property
    def model_ref(self) -> ModelRef: ...

    def prediction(
        self, forward: Forward, cell_box: Box | None, facts: ImageFacts
    ) -> Prediction: ...

    def batcher(self, run_batch: Any, stage: str) -> MicroBatcher: ...

    async def image_work(self, lane: str, work: Callable[..., Any], *args: Any) -> Any: ...


class ExplanationService:
    """The explanation side of an `InferenceService`: a micro-batcher per explained layer,
    feeding the service's model worker, and bounded rendering."""

    def __init__(self, service: Classifier) -> None:
        self.service = service
        self.runtime, self.settings = service.runtime, service.settings
        self.metrics = service.metrics
        # Rendering holds full-size copies of the upload: bound how many run at once.
        self._render_slots = asyncio.Semaphore(2)
        self._batchers: dict[str, MicroBatcher[_ExplainItem, _MapResult]] = {}

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()

    async def explain(self, encoded_image: bytes, options: ExplainOptions) -> Explanation:
        done = await self._maps(encoded_image, [self._method(options.method)], options)
        (found,) = done.maps
        evidence = None
        if options.faithfulness:
            evidence = await self._faithfulness(done, found.heatmap)
        overlay_bytes, heatmap_bytes, _ = await self._render_timed(done, found, options)
        response = ExplainResponse(
            model=self.service.model_ref,
            prediction=self.service.prediction(
                done.forward,
                done.cell_box,
                done.facts,
            ),
            method=found.method.name,
            layer=found.layer,
            target=self._target(done.forward, done.target),
            image_size=(done.image.shape[1], done.image.shape[0]),
            cell_box=None if done.cell_box is None else list(done.cell_box),
            overlay_png=_b64(overlay_bytes),
            heatmap_png=_b64(heatmap_bytes),
            faithfulness=evidence,
        )
        return Explanation(response, overlay_bytes, heatmap_bytes)

    async def explain_methods(
        self, encoded_image: bytes, options: ExplainOptions
    ) -> ExplainMethodsResponse:
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
            overlay_bytes, heatmap_bytes, seconds = await self._render_timed(done, found, options)
            return MethodExplanation(
                method=found.method.name,
                layer=found.layer,
                overlay_png=_b64(overlay_bytes),
                heatmap_png=_b64(heatmap_bytes),
                faithfulness=evidence,
                latency_ms=1000.0 * (found.seconds + seconds),
            )

        explanations = await asyncio.gather(*(one(found) for found in done.maps))
        return ExplainMethodsResponse(
            model=self.service.model_ref,
            prediction=self.service.prediction(
                done.forward,
                done.cell_box,
                done.facts,
            ),
            target=self._target(done.forward, done.target),
            image_size=(done.image.shape[1], done.image.shape[0]),
            cell_box=None if done.cell_box is None else list(done.cell_box),
            passes_ms=1000.0 * passes_seconds,
            explanations=explanations,
        )

    def methods_of(self, spec: str) -> list[CamMethod]:
        """ "all", or method names separated by commas (aliases allowed, repeats dropped),
        in the order given."""
        if spec.strip().lower() == "all":
            return [METHODS[name] for name in sorted(METHODS)]
        names = [part for part in spec.split(",") if part.strip()]
        if not names:
            raise InvalidParameter(
                f"method={spec!r} names no method; expected names of "
                f"{sorted(METHODS)} separated by commas, or 'all'",
                code="unknown_method",
            )
        methods = [self._method(name) for name in names]
        return list({method.name: method for method in methods}.values())

    async def _maps(
        self, encoded_image: bytes, methods: list[CamMethod], options: ExplainOptions
    ) -> _ImageMaps:
        """Decode once, run one backward pass per distinct layer of `methods` (through that
        layer's micro-batcher), and turn it into each method's map, in the order given."""
        # With several methods, `layer` goes to those that can explain any layer; a method
        # bound to one layer (CAM) keeps its own.
        several = len(methods) > 1
        layers = {
            method.name: method.layer_for(
                None if several and method.fixed_layer else options.layer, self.runtime
            )
            for method in methods
        }
        target = self._resolve_target(options.target)
        by_layer: dict[str, list[CamMethod]] = {}
        for method in methods:
            by_layer.setdefault(layers[method.name], []).append(method)
        batchers = [self._explain_batcher(layer) for layer in by_layer]
        with ExitStack() as expecting:
            for batcher in batchers:
                expecting.enter_context(batcher.expecting(1))
            image, model_input, cell_box, facts = await self._decode(
                encoded_image, options.pixel_size_um, options.cell
            )
            results = await asyncio.gather(
                *(
                    batcher.submit(_ExplainItem(model_input, target, layer_methods))
                    for batcher, layer_methods in zip(batchers, by_layer.values(), strict=True)
                )
            )
        result_of = {
            method.name: result
            for result, layer_methods in zip(results, by_layer.values(), strict=True)
            for method in layer_methods
        }
        maps = [
            _MethodMap(
                method,
                layers[method.name],
                result_of[method.name].heatmaps[method.name],
                result_of[method.name].seconds[method.name],
            )
            for method in methods
        ]
        forward, target = results[0].forward, results[0].target
        return _ImageMaps(image, model_input, cell_box, facts, forward, target, maps)

    def _explain_batcher(self, layer: str) -> MicroBatcher[_ExplainItem, _MapResult]:
        batcher = self._batchers.get(layer)
        if batcher is None:
            batcher = self._batchers[layer] = self.service.batcher(
                lambda items: self._explain_batch(items, layer), "explanation"
            )
        return batcher

    async def _render_timed(
        self, done: _ImageMaps, found: _MethodMap, options: ExplainOptions
    ) -> tuple[bytes | None, bytes | None, float]:
        async with self._render_slots:
            with self.metrics.stage("encode"):
                started = perf_counter()
                overlay_bytes, heatmap_bytes = await self.service.image_work(
                    EXPLAIN,
                    self._render,
                    done.image,
                    done.cell_box,
                    done.facts.scale,
                    found.heatmap,
                    options,
                )
                return overlay_bytes, heatmap_bytes, perf_counter() - started

    def _target(self, forward: Forward, target: int) -> Target:
        return Target(
            label=self.runtime.manifest.class_names[target],
            class_index=target,
            probability=float(forward.probabilities[target]),
        )

    async def _decode(
        self, encoded: bytes, um_per_px: float | None, cell: int = 0
    ) -> tuple[np.ndarray, np.ndarray, Box | None, ImageFacts]:
        """The upload decoded, and the model input, box and facts of its cell `cell` (0: the
        main, largest; the order of /predict's `cells`)."""

        def decode_and_preprocess() -> tuple[np.ndarray, np.ndarray, Box | None, ImageFacts]:
            with self.metrics.stage("decode"):
                image = decode_image(encoded, self.settings.max_image_pixels)
                prepared = self.runtime.prepare(image, um_per_px, max_cells=cell + 1)
                if cell >= len(prepared.cells) or (cell > 0 and prepared.cells[0][1] is None):
                    found = 0 if prepared.cells[0][1] is None else len(prepared.cells)
                    raise InvalidParameter(
                        f"cell={cell}, but {found} white cell(s) were found in this image "
                        "(cells are numbered from 0, largest first, as /predict lists them)"
                    )
                model_input, box = prepared.cells[cell]
                return image, model_input, box, prepared.facts

        return await self.service.image_work(EXPLAIN, decode_and_preprocess)

    async def _faithfulness(self, done: _ImageMaps, heatmap: np.ndarray) -> Faithfulness:
        """The target's probability with only the hottest 20% of the input kept, and with it
        removed (blurred): two more forward passes, batched together."""
        heat = heat_at_input(heatmap, self.runtime.manifest.input_size)
        kept, removed = keep_and_remove(done.model_input, heat, KEEP_FRACTION)
        target = done.target
        with self.service.forward_batcher.expecting(2):
            passes = await asyncio.gather(
                self.service.forward_batcher.submit(kept),
                self.service.forward_batcher.submit(removed),
            )
        return Faithfulness(
            fraction=KEEP_FRACTION,
            target_probability=float(done.forward.probabilities[target]),
            top_kept_probability=float(passes[0].probabilities[target]),
            top_removed_probability=float(passes[1].probabilities[target]),
        )

    def _explain_batch(self, items: list[_ExplainItem], layer: str) -> list[_MapResult]:
        gradients = self.runtime.gradients(
            np.stack([item.inputs for item in items]),
            np.array([item.target for item in items], np.int32),
            layer,
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

    def _render(
        self,
        image: np.ndarray,
        cell_box: Box | None,
        scale: Scale | None,
        heatmap: np.ndarray,
        options: ExplainOptions,
    ) -> tuple[bytes | None, bytes | None]:
        localisation = self.runtime.manifest.preprocessing.localisation
        if cell_box is None or localisation is None:
            full = upsample(heatmap, image.shape[1], image.shape[0])
        else:  # the window's map, put back where the window was cut from
            full = normalise(
                place_in_frame(
                    heatmap,
                    cell_box,
                    image.shape,
                    localisation,
                    None if scale is None else scale.hint,
                )
            )
        overlay_bytes = heatmap_bytes = None
        if options.output in ("overlay", "both"):
            painted = overlay(image, full, options.colormap, options.alpha, options.threshold)
            if options.outline and cell_box is not None:
                outline_box(painted, cell_box)
            overlay_bytes = encode_png(painted)
        if options.output in ("heatmap", "both"):
            heatmap_bytes = heatmap_png(full)
        return overlay_bytes, heatmap_bytes

    def _method(self, name: str) -> CamMethod:
        # An unencoded "+" in a query string arrives as a space ("gradcam++" -> "gradcam  "),
        # and a list may have spaces after its commas ("gradcam, layercam"): try the name
        # with spaces as "+", then with them trimmed.
        for candidate in (name.lower().replace(" ", "+"), name.lower().strip()):
            method = METHODS.get(METHOD_ALIASES.get(candidate, candidate))
            if method is not None:
                return method
        raise InvalidParameter(
            f"unknown method {name.strip()!r}; expected one of {sorted(METHODS)}",
            code="unknown_method",
        )

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
            f"0..{len(names) - 1}",
            code="unknown_target",
        )


def _b64(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")
