"""Find the white blood cell in a smear and cut the classification window around it.

The nucleus of a white cell is the only large, strongly stained purple-blue object in a
Wright/Giemsa smear: red cells are pink and platelets are small. So the cell is found as
the largest connected component of a nucleus-colour mask in OpenCV's HSV space, at a fixed
working width so that a 640x480 upload behaves like the data set's 320x240 frames. The
window is then cut from the full-resolution image. Deterministic; numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from model_core.errors import ScaleOutOfReach
from model_core.store.manifest import Localisation

Box = tuple[int, int, int, int]
"""[x0, y0, x1, y1] in pixels of the image it was found in (x1, y1 exclusive)."""

REFERENCE_UM_PER_PX = 0.1515
"""Micrometres per pixel of the data set's frames at the working width (320x240): the train
originals' red cells (VOC boxes not cut by the edge) are 49.5 px across there, and a red
cell is about 7.5 um. The cell finder and the window work at this scale."""


@dataclass(frozen=True)
class Scale:
    """An image's scale: micrometres per pixel, and where that came from: `given` by the
    client, `measured` from its red cells (model_core.inputs.scale), or `assumed` (nothing
    to measure it by)."""

    um_per_px: float
    source: Literal["given", "measured", "assumed"]
    field_of_view: bool = False
    """The image shows the data set's field of view (its width is the working width at the
    reference scale): the cell is found as on the data set's own frames."""

    @property
    def hint(self) -> float | None:
        """What the localiser is told: None for the data set's field of view, else the
        micrometres per pixel."""
        return None if self.field_of_view else self.um_per_px


def field_of_view_scale(image_width: int, spec: Localisation) -> float:
    """Micrometres per pixel of an image that shows the data set's field of view."""
    return REFERENCE_UM_PER_PX * spec.working_width / max(1, image_width)


def working_factor(image_width: int, spec: Localisation, um_per_px: float | None) -> float:
    """Image pixels per pixel at the working scale (the reference's); with the scale
    assumed, exactly the image's width over the working width."""
    if um_per_px is None:
        return max(1, image_width) / spec.working_width
    return REFERENCE_UM_PER_PX / float(um_per_px)


MAX_WORKING_PIXELS = 4_000_000
"""The most pixels an image may have at the working scale (about 50 of the data set's
frames): a larger one, at the scale given, would be searched for its cell at a size that
costs seconds and hundreds of megabytes."""


def _working_copy(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The image resized by 1 / `factor` (aspect kept) to the working scale."""
    height, width = rgb.shape[:2]
    if width == round(width / factor) and height == round(height / factor):
        return rgb
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    interpolation = cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interpolation)


def nucleus_mask(rgb: np.ndarray, spec: Localisation) -> np.ndarray:
    """uint8 0/1 mask of nucleus-coloured pixels, opened then closed."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    low = np.array([spec.hue_min, spec.saturation_min, spec.value_min], np.uint8)
    high = np.array([spec.hue_max, 255, 255], np.uint8)
    mask = cv2.inRange(hsv, low, high)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((spec.open_size,) * 2, np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((spec.close_size,) * 2, np.uint8))


def find_cells(rgb: np.ndarray, spec: Localisation, um_per_px: float | None = None) -> list[Box]:
    """Every white cell's box in `rgb`'s pixels (RGB uint8 [H, W, 3], any size, `um_per_px` if
    known), largest nucleus first; empty when nothing is stained like a nucleus of a cell's
    size. A cell's nucleus may be in pieces (a neutrophil's lobes): pieces closer than
    `spec.lobe_gap_um` are one cell. Pieces too small to be a nucleus (platelets, stain
    specks) are no cell, alone or grouped."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 2:
        return []
    factor = working_factor(rgb.shape[1], spec, um_per_px)
    working_pixels = rgb.shape[0] * rgb.shape[1] / factor**2
    if um_per_px is not None and working_pixels > MAX_WORKING_PIXELS:
        raise ScaleOutOfReach(
            f"at {um_per_px:g} um per pixel this {rgb.shape[1]}x{rgb.shape[0]} image is "
            f"{working_pixels / 1e6:.0f} megapixels at the model's scale "
            f"({REFERENCE_UM_PER_PX} um per pixel); the limit is {MAX_WORKING_PIXELS / 1e6:g}: "
            "send a smaller field, or check pixel_size_um"
        )
    working = _working_copy(np.ascontiguousarray(rgb, dtype=np.uint8), factor)
    if min(working.shape[:2]) < 2:
        return []
    mask = nucleus_mask(working, spec)
    # The least nucleus is a share of the data set's frame: an area in um^2. With the scale
    # assumed the image is that frame (its share of the image's own area, as before).
    frame_area = (
        working.shape[0] * working.shape[1]
        if um_per_px is None
        else spec.working_width * spec.working_width * 3 / 4
    )
    least_area = spec.min_area_fraction * frame_area
    boxes = [
        _cell_box(nucleus_box, spec, factor, rgb.shape)
        for nucleus_box in _nucleus_groups(mask, spec, least_area)
    ]
    return boxes


MAX_LOBES, MAX_ELONGATION = 3, 3.0
"""A cell's largest nucleus piece is at least 1 / MAX_LOBES of the least nucleus area, and
its pieces' box is at most MAX_ELONGATION times longer than wide."""


def _nucleus_groups(mask: np.ndarray, spec: Localisation, least_area: float) -> list[Box]:
    """Boxes (working pixels) of the groups of nucleus pieces at least `least_area` in all,
    largest first; pieces within `spec.lobe_gap_um` of each other are one group."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return []
    gap = max(1, round(spec.lobe_gap_um / REFERENCE_UM_PER_PX))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap + 1, gap + 1))
    _, groups = cv2.connectedComponents(cv2.dilate(mask, kernel), connectivity=8)
    # Each piece's group, read at one of its own pixels (its top-left run's first pixel).
    piece_group = np.zeros(count, np.int32)
    for piece in range(1, count):
        x, y, w, _h, _a = stats[piece]
        row = labels[y, x : x + w]
        piece_group[piece] = groups[y, x + int(np.argmax(row == piece))]
    areas = np.bincount(piece_group[1:], weights=stats[1:, cv2.CC_STAT_AREA])
    found = []
    for group in np.flatnonzero(areas >= max(least_area, 1)):
        pieces = 1 + np.flatnonzero(piece_group[1:] == group)
        if stats[pieces, cv2.CC_STAT_AREA].max() < least_area / MAX_LOBES:
            continue  # specks in a row (text, debris), no piece the size of a lobe
        x0 = int(stats[pieces, cv2.CC_STAT_LEFT].min())
        y0 = int(stats[pieces, cv2.CC_STAT_TOP].min())
        x1 = int((stats[pieces, cv2.CC_STAT_LEFT] + stats[pieces, cv2.CC_STAT_WIDTH]).max())
        y1 = int((stats[pieces, cv2.CC_STAT_TOP] + stats[pieces, cv2.CC_STAT_HEIGHT]).max())
        if max(x1 - x0, y1 - y0) > MAX_ELONGATION * min(x1 - x0, y1 - y0):
            continue  # a streak, not a nucleus
        found.append((float(areas[group]), (x0, y0, x1, y1)))
    return [box for _, box in sorted(found, key=lambda item: -item[0])]


def _cell_box(nucleus: Box, spec: Localisation, factor: float, shape: tuple[int, ...]) -> Box:
    """The nucleus box (working pixels) grown by the margin, which approximates the cell with
    its cytoplasm, in the full image's pixels and inside it."""
    x, y = nucleus[0], nucleus[1]
    w, h = nucleus[2] - x, nucleus[3] - y
    margin_x, margin_y = spec.box_margin * w, spec.box_margin * h
    box = np.array([x - margin_x, y - margin_y, x + w + margin_x, y + h + margin_y]) * factor
    full_height, full_width = shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(full_width, int(np.ceil(box[2]))), min(full_height, int(np.ceil(box[3])))
    return (x0, y0, x1, y1)


def find_cell(rgb: np.ndarray, spec: Localisation, um_per_px: float | None = None) -> Box | None:
    """The main white cell's box (the largest nucleus, `find_cells`'s first), or None."""
    cells = find_cells(rgb, spec, um_per_px)
    return cells[0] if cells else None


def window_rect(
    box: Box, image_width: int, spec: Localisation, um_per_px: float | None = None
) -> tuple[int, int, int]:
    """The square classification window around `box` in the pixels of an image
    `image_width` wide (at `um_per_px` if known): its top-left corner (x0, y0), which may lie
    outside the image, and its side: `spec.window` pixels at the working scale, so a window
    of fixed size in micrometres."""
    side = max(1, round(spec.window * working_factor(image_width, spec, um_per_px)))
    centre_x, centre_y = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    return round(centre_x - side / 2.0), round(centre_y - side / 2.0), side


def cut_window(
    rgb: np.ndarray,
    box: Box,
    spec: Localisation,
    output_size: tuple[int, int],
    um_per_px: float | None = None,
) -> np.ndarray:
    """The square window around `box`, black beyond the image's edges, resized from full
    resolution to `output_size` (height, width) by area averaging: uint8 [h, w, 3] for an
    RGB frame (any [H, W, ...] array gives its own dtype and channels, e.g. a float map)."""
    x0, y0, side = window_rect(box, rgb.shape[1], spec, um_per_px)
    window = np.zeros((side, side, *rgb.shape[2:]), rgb.dtype)
    height, width = rgb.shape[:2]
    src_x0, src_y0 = max(0, x0), max(0, y0)
    src_x1, src_y1 = min(width, x0 + side), min(height, y0 + side)
    if src_x1 > src_x0 and src_y1 > src_y0:
        window[src_y0 - y0 : src_y1 - y0, src_x0 - x0 : src_x1 - x0] = rgb[
            src_y0:src_y1, src_x0:src_x1
        ]
    interpolation = cv2.INTER_AREA if side >= max(output_size) else cv2.INTER_LINEAR
    return cv2.resize(window, output_size[::-1], interpolation=interpolation)


def place_in_frame(
    window_map: np.ndarray,
    box: Box,
    frame_shape: tuple[int, ...],
    spec: Localisation,
    um_per_px: float | None = None,
) -> np.ndarray:
    """A map over the window (e.g. a heat map [h, w] at the model's input or feature size)
    put back where the window was cut from: float32 [H, W] of the frame, zero outside it."""
    height, width = frame_shape[:2]
    x0, y0, side = window_rect(box, width, spec, um_per_px)
    resized = cv2.resize(
        np.asarray(window_map, np.float32), (side, side), interpolation=cv2.INTER_LINEAR
    )
    frame_map = np.zeros((height, width), np.float32)
    dst_x0, dst_y0 = max(0, x0), max(0, y0)
    dst_x1, dst_y1 = min(width, x0 + side), min(height, y0 + side)
    if dst_x1 > dst_x0 and dst_y1 > dst_y0:
        frame_map[dst_y0:dst_y1, dst_x0:dst_x1] = resized[
            dst_y0 - y0 : dst_y1 - y0, dst_x0 - x0 : dst_x1 - x0
        ]
    return frame_map
