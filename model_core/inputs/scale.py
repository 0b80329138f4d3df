"""Measure a smear's scale from its red cells: the typical red-cell radius in pixels.

Red cells are the ruler every blood smear carries (about 7.5 um across, a narrow spread), so
their radius in pixels says how big the field of view is, whatever the camera or resizing.
A scale-free guess comes first: the stained cells are darker in green than the glass
(Otsu's threshold at <=160 px, pallors filled), and a high percentile of the distance
transform inside them is the inscribed radius of the larger cells. The rims are then found
with OpenCV's circle Hough transform on the lightness channel at the size that brings the
guess to WORKING_RADIUS, with a narrow range of radii; circles centred on the white cell's
nucleus are dropped, each circle's rim radius is fitted to sub-pixel precision on rays from
its centre (Hough radii are whole pixels), and the pass reruns centred on their median until
it moves by under 5% (3% after the first pass). The estimate is that median. Quality falls
to 0 on noise, grey and unstained images. Train originals: 79-86% of frames within 10%,
median error 4.4-5.1%, at any scale or in a wider field; crops of 150-250 px mostly get
None (too few whole rims). numpy and OpenCV only; deterministic. Measured by
training/studies/scale_report.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model_core.inputs.localisation import (
    MAX_WORKING_PIXELS,
    REFERENCE_UM_PER_PX,
    Box,
    Scale,
    field_of_view_scale,
    find_cells,
    nucleus_mask,
    working_factor,
)
from model_core.store.manifest import Localisation

GUESS_SIDE = 160
"""The size guess works with the longer side at most this many pixels."""
GUESS_QUANTILE, GUESS_CALIBRATION = 95.0, 0.92
"""The guess: this percentile of the red-stain mask's distance transform (the inscribed
radius of the larger cells), divided by its median ratio to the radius on the train smears."""
HOLE_FRACTION = 0.2
"""Holes in the mask under this fraction of their blob's area are pallors, filled."""
WORKING_RADIUS = 12.0
"""The fine pass resizes the image so that red cells are about this radius in pixels (the
Hough transform's cost grows with the radius; the rim fit gives sub-pixel radii)."""
MAX_UPSCALE = 2.0
"""Small images are enlarged at most this much to bring red cells to the working size."""
EDGE_THRESHOLD = 60
"""Canny's upper threshold on the lightness channel (the Hough transform's param1)."""
VOTES = 0.8
"""Accumulator votes a centre needs, per pixel of the working radius."""
LOW, HIGH, SPACING = 0.8, 1.25, 0.5
"""The fine pass's radius range and least centre spacing, relative to the current guess."""
RIM_RANGE, RIM_STEPS, RIM_RAYS = (0.55, 1.6), 40, 24
"""Each circle's rim is searched over this range of its Hough radius, on this many rays."""
FINE_PASSES, SETTLED, FIRST_SETTLED = 3, 0.05, 0.03
"""Fine passes, each centred on the last one's rim radius, until it moves by less than
SETTLED (relative), or FIRST_SETTLED after the first pass (whose range is centred on the
rough guess, and which confirms a wrong guess more readily). Fewer passes than 3% throughout,
and as accurate on the train split (training/studies/scale_report.py)."""
MIN_CIRCLES = 2
"""Fewer red-cell circles than this: no estimate."""
CALIBRATION = 1.098
"""Rim radius -> red-cell radius as the VOC boxes of the train originals measure it."""
STAIN_CONTRAST = 5.0
"""Red cells this much redder (Lab a*) than the glass count as fully stained (quality)."""
NUCLEUS = Localisation.model_validate({})
"""The white cell's nucleus colour, as the localiser finds it (its defaults)."""


@dataclass(frozen=True)
class ScaleEstimate:
    """The typical red-cell radius of a smear, in the pixels of the image it was measured in."""

    radius_px: float
    cells: int
    """How many red-cell circles it rests on (a cell may give two: its rim and its pallor)."""
    spread: float
    """Relative spread of their radii: median |r / radius - 1|."""
    quality: float
    """0..1: red-stained, smooth and agreeing circles (median 0.96 on the train smears, 0 on
    pixel noise or grey images); below 0.25 treat the estimate as unreliable."""


def as_rgb(image: np.ndarray) -> np.ndarray | None:
    """An RGB uint8 [H, W, 3] view of `image` (grey [H, W] or [H, W, 1], RGBA, or floats
    0..255), or None when it is not an image at least 8 pixels on each side."""
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4):
        pixels = pixels[..., :3] if pixels.shape[2] != 1 else pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 8:
        return None
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.nan_to_num(pixels.astype(np.float32)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    """`rgb` resized by `scale`: a shrink averages whole blocks of pixels first (OpenCV's fast
    integer area path) and interpolates the rest, a tenth of the cost of a fractional area
    resize at the same scale-estimate accuracy (scale_report, train)."""
    if abs(scale - 1.0) < 1e-3:
        return rgb
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    block = min(int(1 / scale), width, height)
    if block >= 2:
        rgb = cv2.resize(rgb, (width // block, height // block), interpolation=cv2.INTER_AREA)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


def _blurred_lightness(lab: np.ndarray) -> np.ndarray:
    """The Lab lightness channel, smoothed: what the circles and their rims are found on."""
    return cv2.GaussianBlur(np.ascontiguousarray(lab[..., 0]), (3, 3), 0)


def _circles(
    rgb: np.ndarray, lightness: np.ndarray, low: float, high: float, votes: float, spacing: float
) -> np.ndarray:
    """Circles [N, 3] (x, y, r) on `lightness` (`_blurred_lightness` of `rgb`) with radii in
    [low, high], centres at least `spacing` apart and at least `votes` rim pixels, whose
    centre is not on a white cell's nucleus."""
    found = cv2.HoughCircles(
        lightness,
        cv2.HOUGH_GRADIENT,
        dp=1,
        minDist=spacing,
        param1=EDGE_THRESHOLD,
        param2=max(4.0, votes),
        minRadius=max(1, int(np.floor(low))),
        maxRadius=max(2, int(np.ceil(high))),
    )
    if found is None:
        return np.zeros((0, 3), np.float32)
    circles = found[0]
    nucleus = cv2.dilate(nucleus_mask(rgb, NUCLEUS), np.ones((5, 5), np.uint8))
    x = np.clip(circles[:, 0].astype(int), 0, rgb.shape[1] - 1)
    y = np.clip(circles[:, 1].astype(int), 0, rgb.shape[0] - 1)
    return circles[nucleus[y, x] == 0]


def _filled(mask: np.ndarray) -> np.ndarray:
    """`mask` with its small holes (the red cells' pale centres) filled."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return mask
    areas = np.array([cv2.contourArea(contour) for contour in contours])
    parents = hierarchy[0][:, 3]
    holes = [
        contours[int(i)]
        for i in np.flatnonzero(parents >= 0)
        if areas[i] < HOLE_FRACTION * areas[parents[i]]
    ]
    return cv2.drawContours(mask.copy(), holes, -1, 1, -1)


def _size_guess(rgb: np.ndarray) -> float | None:
    """A rough red-cell radius in `rgb`'s pixels, scale-free: the stained cells are darker in
    green than the glass (Otsu's threshold), and the larger distances to the glass inside
    them are their inscribed radii."""
    scale = min(1.0, GUESS_SIDE / max(rgb.shape[:2]))
    green = np.ascontiguousarray(_resized(rgb, scale)[..., 1])
    _, mask = cv2.threshold(green, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    distance = cv2.distanceTransform(_filled(mask), cv2.DIST_L2, 3)
    inside = distance[distance > 0]
    if inside.size < 20:
        return None
    guess = float(np.percentile(inside, GUESS_QUANTILE)) / GUESS_CALIBRATION / scale
    return guess if guess >= 2 else None


_RIM_STEPS = np.linspace(*RIM_RANGE, RIM_STEPS, dtype=np.float32)
_RAY_ANGLES = np.linspace(0, 2 * np.pi, RIM_RAYS, endpoint=False, dtype=np.float32)
_RAY_COS, _RAY_SIN = np.cos(_RAY_ANGLES), np.sin(_RAY_ANGLES)


def _rim_radii(lightness: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """Sub-pixel radii [N] of the circles' rims: where the (blurred) lightness, averaged
    over rays from each centre, rises fastest (cell to glass), refined by a parabola through
    the peak."""
    relative = _RIM_STEPS
    radii = circles[:, 2, None, None] * relative[None, :, None]
    x = (circles[:, 0, None, None] + radii * _RAY_COS).reshape(len(circles), -1)
    y = (circles[:, 1, None, None] + radii * _RAY_SIN).reshape(len(circles), -1)
    samples = cv2.remap(
        lightness.astype(np.float32), x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    rise = np.diff(samples.reshape(len(circles), RIM_STEPS, RIM_RAYS).mean(axis=2), axis=1)
    peak = np.clip(rise.argmax(axis=1), 1, RIM_STEPS - 3)
    rows = np.arange(len(circles))
    before, at, after = rise[rows, peak - 1], rise[rows, peak], rise[rows, peak + 1]
    curvature = before - 2 * at + after
    safe = np.where(np.abs(curvature) > 1e-6, curvature, -1.0)
    offset = np.clip(np.where(np.abs(curvature) > 1e-6, 0.5 * (before - after) / safe, 0), -1, 1)
    step = relative[1] - relative[0]
    return circles[:, 2] * (relative[0] + (peak + 0.5 + offset) * step)


def _fine_circles(
    rgb: np.ndarray, guess: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """Red-cell circles [N, 3] (x, y, r) and their rim radii [N], found at the size that
    brings `guess` to WORKING_RADIUS, then again at the size their median rim radius gives
    while it moves by SETTLED or more; in the pixels of the working image, whose Lab copy is
    returned with them, and its scale."""
    found = None
    for done in range(FINE_PASSES):
        settled = SETTLED if done else FIRST_SETTLED
        scale = min(MAX_UPSCALE, WORKING_RADIUS / guess)
        expected = guess * scale
        working = _resized(rgb, scale)
        lab = cv2.cvtColor(working, cv2.COLOR_RGB2LAB)
        lightness = _blurred_lightness(lab)
        circles = _circles(
            working,
            lightness,
            LOW * expected,
            HIGH * expected,
            VOTES * expected,
            SPACING * expected,
        )
        if len(circles) < MIN_CIRCLES:
            return found
        rims = _rim_radii(lightness, circles)
        found = circles, rims, lab, scale
        previous, guess = guess, float(np.median(rims)) / scale
        if abs(guess / previous - 1) < settled:
            break
    return found


def _percentile(channel: np.ndarray, q: float) -> float:
    """`np.percentile(channel, q)` (linear interpolation) of a uint8 channel, from its
    histogram: one pass instead of a partial sort."""
    counts = np.cumsum(np.bincount(channel.ravel(), minlength=256))
    position = q / 100 * (int(counts[-1]) - 1)
    below = int(np.floor(position))
    low = int(np.searchsorted(counts, below, side="right"))
    high = int(np.searchsorted(counts, below + 1, side="right"))
    return low + (high - low) * (position - below)


def stain_contrast(lab: np.ndarray, circles: np.ndarray) -> float:
    """How much redder (Lab a*) the circles' bodies are than the glass (the brightest tenth
    of the image, `lab` its Lab copy): about 8 on a stained smear, near 0 on noise or a
    grey image."""
    lightness, redness = lab[..., 0], lab[..., 1]
    glass = float(np.median(redness[lightness >= _percentile(lightness, 90)]))
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    x = circles[:, :1] + 0.7 * circles[:, 2:] * np.cos(angles)
    y = circles[:, 1:2] + 0.7 * circles[:, 2:] * np.sin(angles)
    inside = (x >= 0) & (y >= 0) & (x < lab.shape[1]) & (y < lab.shape[0])
    if not inside.any():
        return 0.0
    return float(np.median(redness[y[inside].astype(int), x[inside].astype(int)])) - glass


def smoothness(lab: np.ndarray) -> float:
    """Correlation of the lightness of horizontally adjacent pixels (`lab` the image's Lab
    copy): near 1 in a smear at the working size (cells span many pixels), near 0 in pixel
    noise."""
    lightness = lab[..., 0].astype(np.float64)
    left, right = lightness[:, :-1], lightness[:, 1:]
    count = left.size
    if count < 2:
        return 0.0
    mean_left, mean_right = left.mean(), right.mean()
    var_left = float(np.square(left).mean() - mean_left**2)
    var_right = float(np.square(right).mean() - mean_right**2)
    if var_left < 1e-6 or var_right < 1e-6:
        return 0.0
    covariance = float((left * right).mean() - mean_left * mean_right)
    return covariance / float(np.sqrt(var_left * var_right))


def red_cell_radius_px(image: np.ndarray) -> ScaleEstimate | None:
    """The typical red-cell radius of a smear (RGB uint8 [H, W, 3], any size; grey accepted)
    in its pixels, or None when too few red cells are visible to measure it. Noise and grey
    images may give an estimate, of quality near 0."""
    rgb = as_rgb(image)
    guess = None if rgb is None else _size_guess(rgb)
    found = None if rgb is None or guess is None else _fine_circles(rgb, guess)
    if found is None:
        return None
    circles, rims, lab, scale = found
    radii = rims / scale
    radius = float(np.median(radii))
    spread = float(np.median(np.abs(radii / radius - 1)))
    quality = (
        np.clip(stain_contrast(lab, circles) / STAIN_CONTRAST, 0, 1)
        * np.clip((0.4 - spread) / 0.2, 0, 1)
        * np.clip((smoothness(lab) - 0.5) / 0.4, 0, 1)
        * min(1.0, len(radii) / 6)
    )
    return ScaleEstimate(CALIBRATION * radius, len(radii), spread, float(quality))


MIN_QUALITY = 0.25
"""An estimate of lower quality does not measure the scale."""
FIELD_OF_VIEW_TOLERANCE = 0.3
"""A measured scale this close to the data set's field of view (relative) is taken as that
field. Chosen on the train data: the estimate is within 30% of it on 92% of the augmented
TRAIN copies (85% within 20%; black fill and clumps mislead it) and wrongly within 30% on 20%
of train frames shrunk 0.7x into a wider field (5% at 0.5x). Frames that are the data set's
keep the window v1-v8 were trained on."""
RULER_CIRCLES = 10
"""A measurement of the data set's field of view resting on this many red-cell circles comes
from a field of cells, never a tight crop of one (crops of 150-250 px of the train originals
give at most 7), so a white cell's box larger than any in the training frames does not
overrule it: a strong stain widens the nucleus mask (saturation x1.25 moved 20% of the
held-out copies to a guessed scale 0.45-0.7x the true one, each with 14-28 circles)."""
TYPICAL_CELL_SIDE, MOST_CELL_SIDE = 94.0, 150.0
"""The main white cell's box on the data set's train frames, at the working width: its
median side (sqrt of its area) in pixels, and a side that fewer than 1% exceed."""


def image_scale(
    rgb: np.ndarray,
    spec: Localisation,
    given_um_per_px: float | None,
    cells: list[Box] | None = None,
) -> Scale:
    """The scale of an RGB uint8 image: the client's where given; else measured from its red
    cells against the data set's (`spec.red_cell_radius_px`), unless the white cell would
    then be larger than any in the data set (a measurement that agrees with the data set's
    field of view is overruled so only when it rests on few circles: `RULER_CIRCLES`); else
    assumed: the data set's field of view, unless its white cell would then be larger than
    any in the data set (a tight crop of one cell), in which case the cell's size is taken
    as typical. `cells`: `find_cells(rgb, spec)` where the caller has them already."""
    if given_um_per_px is not None:
        return Scale(float(given_um_per_px), "given")
    field = field_of_view_scale(rgb.shape[1], spec)
    if cells is None:
        cells = find_cells(rgb, spec)
    # The main cell's side in working pixels were the image the data set's field of view.
    side = 0.0
    if cells:
        x0, y0, x1, y1 = cells[0]
        side = float(np.sqrt((x1 - x0) * (y1 - y0))) * spec.working_width / max(1, rgb.shape[1])
    estimate = red_cell_radius_px(rgb)
    measured = None
    if estimate is not None and estimate.quality >= MIN_QUALITY:
        measured = REFERENCE_UM_PER_PX * spec.red_cell_radius_px / estimate.radius_px
        factor = working_factor(rgb.shape[1], spec, measured)
        if rgb.shape[0] * rgb.shape[1] / factor**2 > MAX_WORKING_PIXELS:
            measured = None  # a misreading (no field is that wide): assumed, never refused
    if measured is not None:
        assert estimate is not None
        # A large cell overrules a ruler of few circles (a crop's) that reads the data set's
        # field, not one of many (a field's); a ruler that reads another scale at which the
        # cell would be larger than any is misread, however many circles it rests on.
        ruled = estimate.cells >= RULER_CIRCLES
        near_field = abs(measured / field - 1) <= FIELD_OF_VIEW_TOLERANCE
        if near_field and (ruled or side <= MOST_CELL_SIDE):
            return Scale(field, "measured", field_of_view=True)
        if side * field / measured <= MOST_CELL_SIDE:
            return Scale(measured, "measured")
    if side > MOST_CELL_SIDE:
        return Scale(field * TYPICAL_CELL_SIDE / side, "assumed")
    return Scale(field, "assumed", field_of_view=True)
