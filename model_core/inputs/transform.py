"""The one implementation of the model's input transform, run by training and serving.

`prepare_image` is the whole contract for one RGB frame: white-balance it by its background
when the manifest asks for it (model_core.inputs.colour), find the white cell when the
manifest asks for it (model_core.inputs.localisation), cut the window around it or fall back
to the whole frame, resize, scale. Training runs the same steps, `model_pixels` then
`scale_pixels`, with augmentation in between; serving (`model_core.runtime`) runs
`prepare_frame`: `normalise_colour`, the scale measured on the balanced frame
(model_core.inputs.scale), then `prepare_cells` of every white cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from model_core.inputs.colour import stain_familiar, white_balance
from model_core.inputs.localisation import (
    Box,
    Scale,
    cut_window,
    field_of_view_scale,
    find_cells,
)
from model_core.inputs.scale import image_scale
from model_core.review import ImageFacts
from model_core.store.manifest import Localisation, Preprocessing


def resize_frame(
    rgb: tf.Tensor | np.ndarray, input_size: tuple[int, int], spec: Preprocessing
) -> tf.Tensor:
    """The whole frame ([H, W, 3] or [N, H, W, 3], uint8 or float 0..255) resized to the
    input size, float32 0..255."""
    return tf.image.resize(
        tf.cast(rgb, tf.float32), input_size, method=spec.resize_method, antialias=spec.antialias
    )


def scale_pixels(pixels, spec: Preprocessing):
    """Pixels 0..255 at the input size -> model input (the last step of every path)."""
    return pixels * spec.scale + spec.offset


def to_model_input(
    rgb: tf.Tensor | np.ndarray, input_size: tuple[int, int], spec: Preprocessing
) -> tf.Tensor:
    """Resize RGB pixels ([H, W, 3] or [N, H, W, 3], uint8 or float 0..255) to the input size
    and scale them; returns float32. The whole-frame path: no localisation."""
    return scale_pixels(resize_frame(rgb, input_size, spec), spec)


def as_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB pixels as uint8 (float 0..255 rounded and clipped)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return rgb


def normalise_colour(rgb: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, bool | None]:
    """The first step of every path: the frame white-balanced by its background (the glass)
    to the data set's when the manifest asks for it, and whether a background was found
    (False: none, the frame unchanged, e.g. a tight crop; None: the manifest does not ask)."""
    if spec.white_balance is None:
        return rgb, None
    return white_balance(as_uint8(rgb), spec.white_balance)


def cell_pixels(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    spec: Preprocessing,
    um_per_px: float | None = None,
    max_cells: int = 1,
    boxes: list[Box] | None = None,
) -> list[tuple[np.ndarray, Box | None]]:
    """An RGB uint8 frame [H, W, 3] of any size, colour already normalised
    (`normalise_colour`), at `um_per_px` micrometres per pixel where known (else the data
    set's field of view is assumed) -> for each white cell, largest first and at most
    `max_cells`, the pixels the model sees before scaling (float32 [h, w, 3], 0..255) and
    the cell's box in the frame's pixels; or the whole frame, once, with box None (no
    localisation in `spec`, or no cell found). `boxes`: `find_cells` of the frame at
    `um_per_px`, where the caller has them already."""
    if spec.localisation is not None:
        rgb = as_uint8(rgb)
        if boxes is None:
            boxes = find_cells(rgb, spec.localisation, um_per_px)
        boxes = boxes[: max(1, max_cells)]
        if boxes:
            return [
                (
                    cut_window(rgb, box, spec.localisation, input_size, um_per_px).astype(
                        np.float32
                    ),
                    box,
                )
                for box in boxes
            ]
    return [(resize_frame(rgb, input_size, spec).numpy(), None)]


def model_pixels(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    spec: Preprocessing,
    um_per_px: float | None = None,
) -> tuple[np.ndarray, Box | None]:
    """The main (largest) cell's `cell_pixels` of the colour-normalised frame: what training
    sees of a frame."""
    return cell_pixels(normalise_colour(rgb, spec)[0], input_size, spec, um_per_px)[0]


def prepare_cells(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    spec: Preprocessing,
    um_per_px: float | None = None,
    max_cells: int = 1,
    boxes: list[Box] | None = None,
) -> list[tuple[np.ndarray, Box | None]]:
    """`cell_pixels` scaled: (model input float32 [h, w, 3], cell box or None) per cell, of
    a frame whose colour is already normalised."""
    return [
        (scale_pixels(pixels, spec).astype(np.float32), box)
        for pixels, box in cell_pixels(rgb, input_size, spec, um_per_px, max_cells, boxes)
    ]


@dataclass
class PreparedImage:
    """An image made ready for the model: each cell's input and box, and its scale."""

    cells: list[tuple[np.ndarray, Box | None]]
    """(model input float32 [h, w, 3], box) per white cell, the main (largest) first; one
    whole-frame input with box None where no cell was found."""
    facts: ImageFacts
    """Its size, the scale the cells were cut at and whether its colour was balanced."""

    @property
    def scale(self) -> Scale:
        assert self.facts.scale is not None  # prepare_frame always measures it
        return self.facts.scale


@dataclass
class FirstLook:
    """A frame's cheap first step: its colour normalised and, where the scale is not given,
    its cells cut as the data set's field of view would show them. On the data set's own
    frames the measured scale keeps exactly these (`Scale.hint` None), so their passes may
    start while the scale is still being measured (`finish_frame` says whether they stand)."""

    rgb: np.ndarray
    """The frame, uint8, colour normalised."""
    white_balanced: bool | None
    stain_familiar: bool | None
    """Whether its red cells' stain lies in the manifest's `stain_range` (None: not read,
    or too few red cells)."""
    um_per_px: float | None
    """The scale the client gave, if any."""
    max_cells: int
    boxes: list[Box] | None
    """`find_cells` at the field of view; None where the scale was given or the manifest
    asks for no localisation."""
    field_cells: list[tuple[np.ndarray, Box | None]] | None
    """`prepare_cells` around `boxes` (or of the whole frame): the cells if the frame turns
    out to show the data set's field of view."""


def first_look(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    spec: Preprocessing,
    um_per_px: float | None = None,
    max_cells: int = 1,
) -> FirstLook:
    """`prepare_frame`'s first step (colour, cells at the field of view), for a caller that
    runs their passes while `finish_frame` measures the scale."""
    rgb, white_balanced = normalise_colour(as_uint8(rgb), spec)
    familiar = None if spec.stain_range is None else stain_familiar(rgb, spec.stain_range)
    boxes = field_cells = None
    if spec.localisation is None:
        field_cells = prepare_cells(rgb, input_size, spec)
    elif um_per_px is None:
        boxes = find_cells(rgb, spec.localisation)
        field_cells = prepare_cells(rgb, input_size, spec, None, max_cells, boxes)
    return FirstLook(rgb, white_balanced, familiar, um_per_px, max_cells, boxes, field_cells)


def finish_frame(
    look: FirstLook, input_size: tuple[int, int], spec: Preprocessing
) -> PreparedImage:
    """`prepare_frame`'s second step: the scale given, measured or assumed, and the cells cut
    at it; `look.field_cells` themselves (the same list) where the frame shows the data
    set's field of view."""
    rgb, localisation = look.rgb, spec.localisation
    if localisation is None:
        scale = Scale(
            field_of_view_scale(rgb.shape[1], Localisation.model_validate({})), "assumed", True
        )
    else:
        scale = image_scale(rgb, localisation, look.um_per_px, look.boxes)
    cells = look.field_cells
    if cells is None or scale.hint is not None:
        cells = prepare_cells(rgb, input_size, spec, scale.hint, look.max_cells)
    height, width = rgb.shape[:2]
    facts = ImageFacts(width, height, scale, look.white_balanced, look.stain_familiar)
    return PreparedImage(cells, facts)


def prepare_frame(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    spec: Preprocessing,
    um_per_px: float | None = None,
    max_cells: int = 1,
) -> PreparedImage:
    """What serving does to an RGB frame [H, W, 3] of any size (`um_per_px` micrometres per
    pixel, where known): its colour normalised, its scale given, measured or assumed
    (`image_scale`), then the model input [h, w, 3] and box in the frame's pixels of each
    white cell (at most `max_cells`, largest first; one whole-frame input with box None when
    `spec` asks for no localisation or no cell was found), and what was learnt of it."""
    look = first_look(rgb, input_size, spec, um_per_px, max_cells)
    return finish_frame(look, input_size, spec)


def prepare_image(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    spec: Preprocessing,
    um_per_px: float | None = None,
) -> tuple[np.ndarray, Box | None]:
    """An RGB uint8 frame [H, W, 3] of any size (at `um_per_px` where known) -> (model input
    float32 [h, w, 3], main cell box `(x0, y0, x1, y1)` in the frame's pixels or None when
    the whole frame was classified)."""
    return prepare_cells(normalise_colour(rgb, spec)[0], input_size, spec, um_per_px)[0]


def decode_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """Decode JPEG bytes to RGB uint8 the way libjpeg's default (PIL's) does: the accurate
    integer DCT and fancy upsampling, so training sees the pixels the service will see."""
    return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")


def mirrored(inputs: tf.Tensor) -> tf.Tensor:
    """Model inputs [N, h, w, 3] mirrored left to right."""
    return tf.reverse(inputs, axis=[2])


def mirror_views(inputs: tf.Tensor) -> tf.Tensor:
    """A batch of model inputs [N, h, w, 3] followed by their mirrors [2N, ...]: the two
    views a manifest with `flip_average` answers from."""
    return tf.concat([inputs, mirrored(inputs)], axis=0)


def mean_of_views(logits: tf.Tensor, mirrored_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`flip_average`'s answer from both views' logits: the mean of the two softmax
    outputs, and its log (computed in log space), which serves as the answer's logits."""
    log_mean = tf.reduce_logsumexp(
        tf.stack([tf.nn.log_softmax(logits, axis=1), tf.nn.log_softmax(mirrored_logits, axis=1)]),
        axis=0,
    ) - tf.math.log(2.0)
    return tf.exp(log_mean), log_mean
