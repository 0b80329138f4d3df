"""Classification as plain Python (no HTTP): decode, find the cell, batch, run; the service
that owns the model passes, and its explanation side (`app.engine.explanations`)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import cv2
import numpy as np

from app.core.logs import log_event
from app.core.prometheus import Metrics
from app.core.schemas import (
    CellPrediction,
    ExplainOptions,
    ModelRef,
    PixelScale,
    Prediction,
    PredictResponse,
)
from app.core.settings import Settings
from app.engine.admission import EXPLAIN, FORWARD
from app.engine.batching import MicroBatcher
from app.engine.explanations import ExplanationService
from app.engine.images import decode_image
from app.engine.worker import LaneWorker
from model_core.inputs.localisation import Box
from model_core.inputs.transform import FirstLook, PreparedImage
from model_core.qualify import PredictionQualifier, Qualification
from model_core.review import ImageFacts, ReviewReason, judge
from model_core.runtime import ONNXRUNTIME, Forward, ModelRuntime

T = TypeVar("T")
CellPass = tuple[Forward, Box | None]
"""One cell's forward pass and its box (None: the whole frame)."""


class MainCell(NamedTuple):
    """What the Open Inference Protocol answers of an image: its main cell's."""

    probabilities: np.ndarray
    box: Box | None
    review: bool


Located = tuple[list[CellPass], ImageFacts]
"""One image's cells' passes, the main (largest) first, and what the transform learnt of the
image (its size, the scale they were found at, its colour balance)."""


FORWARD_TURNS = 4
"""Jobs the forward lane (/predict, /v2 infer) may take in a row while explanations wait, at
the model worker and the image threads: a prediction's few short jobs go ahead of an
explanation's long ones, which still get one turn in five under a flood of predictions."""


class InferenceService:
    """Serves one loaded model: every model pass goes through a micro-batcher into the model
    worker's threads, so the event loop never runs a model."""

    def __init__(
        self, runtime: ModelRuntime, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.runtime, self.settings = runtime, settings
        self.metrics = metrics or Metrics()
        runtime.on_device_failure = self._log_device_failure
        # The model worker runs every pass: one thread, or under ONNX Runtime one per
        # forward pass allowed at once (settings.onnx_workers); forward passes and
        # explanations wait in lanes of their own, taken in turn (app.engine.admission
        # bounds how many wait), up to FORWARD_TURNS forward passes for each explanation's.
        turns = {FORWARD: FORWARD_TURNS}
        cpus = len(os.sched_getaffinity(0))
        self._passes_at_once = (
            settings.onnx_workers or cpus if runtime.backend == ONNXRUNTIME else 1
        )
        self._executor = LaneWorker(
            (FORWARD, EXPLAIN),
            thread_name="model",
            threads=self._passes_at_once,
            weights=turns,
        )
        # The image work (decode, colour, scale, cells; explanations' overlays) runs in as
        # many threads as cores, beside it, with the same lanes: a prediction's image work
        # waits for at most one explanation's job per thread, however many are queued.
        self._image_threads = LaneWorker(
            (FORWARD, EXPLAIN),
            thread_name="image",
            threads=settings.image_threads or cpus,
            weights=turns,
        )
        self.forward_batcher: MicroBatcher[np.ndarray, Forward] = self.batcher(
            self.runtime.forward_each, "inference"
        )
        self.qualifier = PredictionQualifier(runtime.manifest)
        self.explanations = ExplanationService(self)

    async def warm_up(self) -> None:
        """One classification and one explanation of every method, end to end, on a
        generated smear, so the first requests after ready pay no first-call costs (the
        renderers, PNG encoder, response models; the model's functions are traced at load)."""
        smear = np.empty((240, 320, 3), np.uint8)
        smear[:] = (225, 180, 200)  # pink background, one purple nucleus
        cv2.ellipse(smear, (160, 120), (28, 22), 0, 0, 360, (110, 50, 160), -1)
        ok, png = cv2.imencode(".png", cv2.cvtColor(smear, cv2.COLOR_RGB2BGR))
        assert ok
        await self.predict([png.tobytes()])
        await self.explanations.explain(png.tobytes(), ExplainOptions.model_validate({}))
        await self.explanations.explain_methods(
            png.tobytes(), ExplainOptions.model_validate({"method": "all"})
        )

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(name=self.runtime.manifest.name, version=self.runtime.manifest.version)

    async def predict(
        self, encoded_images: list[bytes], um_per_px: float | None = None
    ) -> PredictResponse:
        """Classify encoded images (at `um_per_px` micrometres per pixel, where known)."""
        passes = await self._forward(encoded_images, um_per_px, self.settings.max_cells_per_image)
        return PredictResponse(
            model=self.model_ref,
            predictions=[self.image_prediction(cells, facts) for cells, facts in passes],
        )

    async def classify(
        self, encoded_images: list[bytes], um_per_px: float | None = None
    ) -> list[MainCell]:
        """Class probabilities, box and review flag of each encoded image's main cell (the
        other cells are never cut out or run)."""
        passes = await self._forward(encoded_images, um_per_px, max_cells=1)
        return [self.main_cell(located) for located in passes]

    async def _forward(
        self, encoded_images: list[bytes], um_per_px: float | None, max_cells: int
    ) -> list[Located]:
        return await self._forward_each(
            encoded_images,
            lambda encoded: decode_image(encoded, self.settings.max_image_pixels),
            um_per_px,
            max_cells,
        )

    async def classify_pixels(
        self, images: list[np.ndarray], um_per_px: float | None = None
    ) -> list[MainCell]:
        """`classify` of RGB pixel arrays [H, W, 3] (uint8, or float 0..255) of any size,
        through the same preprocessing and micro-batcher as encoded images."""
        passes = await self._forward_each(images, lambda image: image, um_per_px, max_cells=1)
        return [self.main_cell(located) for located in passes]

    def main_cell(self, located: Located) -> MainCell:
        """The main cell's probabilities, box and whether it goes to review."""
        cells, facts = located
        forward, box = cells[0]
        _, reasons = self.judge(forward, box, facts)
        return MainCell(forward.probabilities, box, bool(reasons))

    async def _forward_each(
        self, sources: list, to_rgb: Callable, um_per_px: float | None, max_cells: int
    ) -> list[Located]:
        """Each source's cells (at most `max_cells`, the main first) with their passes, and
        what was learnt of the image; the image work runs off the loop, the passes batched."""
        with self.forward_batcher.expecting(len(sources)):
            return list(
                await asyncio.gather(
                    *(self._located(source, to_rgb, um_per_px, max_cells) for source in sources)
                )
            )

    async def _located(
        self, source, to_rgb: Callable, um_per_px: float | None, max_cells: int
    ) -> Located:
        """Decode the source, normalise its colour and cut its cells at the data set's field
        of view (a thread), and start their passes while the scale is measured (another
        thread): on the data set's own frames those cells stand and their passes are done or
        under way; where the scale turns out otherwise they are cancelled (skipped by the
        batcher if still queued) and the cells cut at the measured scale run instead."""
        runtime, metrics = self.runtime, self.metrics

        def look(source) -> FirstLook:
            with metrics.stage("decode"):
                return runtime.first_look(to_rgb(source), um_per_px, max_cells)

        def finish(first: FirstLook) -> PreparedImage:
            with metrics.stage("scale"):
                return runtime.finish(first)

        first = await self.image_work(FORWARD, look, source)
        early = [
            asyncio.ensure_future(self.forward_batcher.submit(model_input))
            for model_input, _ in first.field_cells or []
        ]
        try:
            prepared = await self.image_work(FORWARD, finish, first)
            if prepared.cells is first.field_cells:
                passes = await asyncio.gather(*early)
            else:
                for pending in early:
                    pending.cancel()
                passes = await asyncio.gather(
                    *(self.forward_batcher.submit(model_input) for model_input, _ in prepared.cells)
                )
        finally:
            for pending in early:
                pending.cancel()  # only those not done yet: after an error or a cancellation
        return (
            [(forward, box) for forward, (_, box) in zip(passes, prepared.cells, strict=True)],
            prepared.facts,
        )

    async def image_work(self, lane: str, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in an image thread, in `lane`'s turn (FORWARD or EXPLAIN)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._image_threads.lane(lane), work, *args)

    async def close(self) -> None:
        await self.forward_batcher.close()
        await self.explanations.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._image_threads.shutdown(wait=False, cancel_futures=True)

    def _log_device_failure(self, failure: str) -> None:
        manifest = self.runtime.manifest
        log_event(
            "device_failure",
            logging.ERROR,
            model=manifest.name,
            version=manifest.version,
            device=self.runtime.device,
            error=failure,
        )

    def batcher(self, run_batch, stage: str) -> MicroBatcher:
        settings = self.settings
        # Forward passes are sized for their backend: ONNX Runtime is cheapest per image
        # in small batches (settings.onnx_max_pass_images).
        lane, max_size = (
            FORWARD,
            (
                settings.onnx_max_pass_images
                if self.runtime.backend == ONNXRUNTIME
                else settings.max_pass_images
            ),
        )
        if stage == "explanation":  # short passes: a forward pass never waits long behind one
            lane, max_size = (
                EXPLAIN,
                min(settings.max_pass_images, settings.max_explain_pass_images),
            )
        return MicroBatcher(
            run_batch,
            self._executor.lane(lane),
            max_size,
            self.settings.batch_max_wait_ms / 1000.0,
            self.metrics.batch_observer(stage),
            max_in_flight=self._passes_at_once if lane == FORWARD else 1,
        )

    def image_prediction(self, cells: list[CellPass], facts: ImageFacts) -> Prediction:
        """An image's answer: its main cell's fields, and every cell's in `cells`."""
        answers = [self.cell_prediction(forward, box, facts) for forward, box in cells]
        return Prediction(
            **answers[0].model_dump(),
            **_image_fields(facts),
            cells=answers if cells[0][1] is not None else [],
        )

    def prediction(self, forward: Forward, cell_box: Box | None, facts: ImageFacts) -> Prediction:
        """The answer for one cell (or the whole frame) of an image."""
        answer = self.cell_prediction(forward, cell_box, facts)
        return Prediction(**answer.model_dump(), **_image_fields(facts))

    def cell_prediction(
        self, forward: Forward, cell_box: Box | None, facts: ImageFacts
    ) -> CellPrediction:
        names = self.runtime.manifest.class_names
        probabilities = forward.probabilities
        index = int(np.argmax(probabilities))
        quality, reasons = self.judge(forward, cell_box, facts)
        return CellPrediction(
            label=names[index],
            class_index=index,
            confidence=float(probabilities[index]),
            probabilities={name: float(p) for name, p in zip(names, probabilities, strict=True)},
            calibrated_confidence=quality.calibrated_confidence,
            in_distribution=quality.in_distribution,
            ood_distance=quality.ood_distance,
            ood_reason=quality.ood_reason,
            cell_box=None if cell_box is None else list(cell_box),
            region="whole_frame" if cell_box is None else "cell",
            review=bool(reasons),
            review_reasons=reasons,
        )

    def judge(
        self, forward: Forward, cell_box: Box | None, facts: ImageFacts
    ) -> tuple[Qualification, list[ReviewReason]]:
        """One cell's calibrated confidence and distribution check, and the reasons for a
        person to look at it (counted in the metrics)."""
        runtime = self.runtime
        quality, reasons = judge(
            self.qualifier,
            forward.logits,
            forward.features,
            cell_box,
            facts,
            runtime.manifest.review,
            runtime.localises,
        )
        self.metrics.count_review(reasons)
        return quality, reasons


WHITE_BALANCE = {True: "applied", False: "no_background", None: None}
STAIN = {True: "familiar", False: "unfamiliar", None: None}


def _image_fields(facts: ImageFacts) -> dict:
    """The answer's fields that belong to the whole image."""
    scale = facts.scale
    return {
        "scale": None
        if scale is None
        else PixelScale(um_per_px=scale.um_per_px, source=scale.source),
        "white_balance": WHITE_BALANCE[facts.white_balanced],
        "stain": STAIN[facts.stain_familiar],
    }
