"""The red-cell scale estimator on the real smears of examples/ and generated variants of them:
it follows resizing, reads a wider field, and gives nothing (or quality 0) on non-smears."""

import cv2
import numpy as np
import pytest

from model_core.inputs.scale import ScaleEstimate, red_cell_radius_px
from tests.utils.images import example_smears

SMEARS = {smear.path.name: smear for smear in example_smears()}


def _rgb(name: str) -> np.ndarray:
    bgr = cv2.imread(str(SMEARS[name].path))
    assert bgr is not None, name
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _in_field(rgb: np.ndarray, factor: float) -> np.ndarray:
    """`rgb` shrunk by `factor` and centred in a field of its own glass colour and size."""
    small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0]
    field = np.empty_like(rgb)
    field[:] = np.median(rgb[lightness >= np.percentile(lightness, 90)], axis=0)
    y0, x0 = (rgb.shape[0] - small.shape[0]) // 2, (rgb.shape[1] - small.shape[1]) // 2
    field[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return field


# Known gaps (training/studies/scale_report.py: about 80% of full frames and 72% of 0.5x-in-a-field
# frames within 10% on train): where the size guess is off by more than the fine pass's range,
# the fine pass locks onto pallors or clumps. Strict, so that a fix shows.
KNOWN_GAP = pytest.mark.xfail(reason="scale estimator below its target", strict=True)
DOUBLING_GAPS = {"lymphocyte-2.jpeg", "neutrophil-2.jpeg"}
HALVING_GAPS = {"monocyte-2.jpeg", "neutrophil-2.jpeg"}


def _cases(gaps: set[str]) -> list:
    return [
        pytest.param(name, marks=KNOWN_GAP) if name in gaps else name for name in sorted(SMEARS)
    ]


def _estimate(rgb: np.ndarray) -> ScaleEstimate:
    estimate = red_cell_radius_px(rgb)
    assert estimate is not None
    return estimate


@pytest.mark.parametrize("name", sorted(SMEARS))
def test_a_smear_has_red_cells_of_the_data_sets_size(name):
    estimate = _estimate(_rgb(name))
    # Red cells on the data set's 320x240 frames are about 24 px in radius.
    assert 18 <= estimate.radius_px <= 30, estimate
    assert estimate.cells >= 2 and 0 <= estimate.quality <= 1


@pytest.mark.parametrize("name", _cases(DOUBLING_GAPS))
def test_the_estimate_doubles_when_the_smear_is_enlarged_twice(name):
    rgb = _rgb(name)
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    ratio = _estimate(big).radius_px / _estimate(rgb).radius_px
    assert ratio == pytest.approx(2.0, rel=0.10)


@pytest.mark.parametrize("name", _cases(HALVING_GAPS))
def test_the_estimate_halves_when_the_smear_is_shrunk_into_a_wider_field(name):
    rgb = _rgb(name)
    ratio = _estimate(_in_field(rgb, 0.5)).radius_px / _estimate(rgb).radius_px
    assert ratio == pytest.approx(0.5, rel=0.10)


def _not_smears() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "blank": np.full((240, 320, 3), 230, np.uint8),
        "black": np.zeros((480, 640, 3), np.uint8),
        "noise": rng.integers(0, 256, (240, 320, 3)).astype(np.uint8),
        "noise 640x480": rng.integers(0, 256, (480, 640, 3)).astype(np.uint8),
    }


@pytest.mark.parametrize("name, rgb", _not_smears().items(), ids=list(_not_smears()))
def test_there_is_no_confident_estimate_without_red_cells(name, rgb):
    estimate = red_cell_radius_px(rgb)
    assert estimate is None or estimate.quality < 0.1, estimate


def _odd_inputs() -> dict[str, np.ndarray]:
    smear = _rgb(sorted(SMEARS)[0])
    grey = cv2.cvtColor(cv2.cvtColor(smear, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return {
        "1x1": np.zeros((1, 1, 3), np.uint8),
        "2x2": np.full((2, 2, 3), 128, np.uint8),
        "empty": np.zeros((0, 0, 3), np.uint8),
        "3x4000": np.tile(smear[:3], (1, 13, 1))[:, :4000],
        "4000x12": np.tile(smear[:, :12], (17, 1, 1))[:4000],
        "20x3000 strip": cv2.resize(smear[100:120], (3000, 20)),
        "grey as RGB": grey,
        "grey 2-D": grey[..., 0],
        "RGBA": np.dstack([smear, np.full(smear.shape[:2], 255, np.uint8)]),
        "float": smear.astype(np.float32),
    }


@pytest.mark.parametrize("name, rgb", _odd_inputs().items(), ids=list(_odd_inputs()))
def test_odd_inputs_never_raise(name, rgb):
    estimate = red_cell_radius_px(rgb)
    assert estimate is None or (estimate.radius_px > 0 and 0 <= estimate.quality <= 1)


def test_the_estimate_is_deterministic():
    rgb = _rgb(sorted(SMEARS)[0])
    assert red_cell_radius_px(rgb) == red_cell_radius_px(rgb.copy())


def test_a_measured_scale_beyond_reach_is_not_used_and_never_refused(smears, monkeypatch):
    """A misread ruler (red cells measured a tenth of their size) would make the frame a field
    wider than the working limit: the scale is then assumed, not measured, and the image is
    answered, never refused as a given `pixel_size_um` that large would be."""
    import numpy as np
    from PIL import Image

    from model_core.inputs import scale as scale_module
    from model_core.inputs.localisation import find_cells
    from model_core.store.manifest import Localisation

    spec = Localisation.model_validate({"red_cell_radius_px": 24.89})
    rgb = np.asarray(Image.open(smears[0].path).convert("RGB"))
    misread = scale_module.ScaleEstimate(2.0, 12, 0.05, 1.0)
    monkeypatch.setattr(scale_module, "red_cell_radius_px", lambda image: misread)
    found = scale_module.image_scale(rgb, spec, None)
    assert found.source == "assumed" and found.field_of_view
    assert find_cells(rgb, spec, found.hint)  # the cell is still found


def test_a_field_of_red_cells_is_not_taken_for_a_crop_by_a_large_cell_box(smears, monkeypatch):
    """A stain strong enough to widen the nucleus mask makes the white cell's box larger than
    any in the training frames: a ruler of many red cells still says the frame is a field at
    the data set's scale; the same box with a ruler of few circles (all a tight crop shows)
    is taken for a crop, its cell's size for typical."""
    from PIL import Image

    from model_core.inputs import scale as scale_module
    from model_core.store.manifest import Localisation

    spec = Localisation.model_validate({"red_cell_radius_px": 24.89})
    rgb = np.asarray(Image.open(SMEARS["eosinophil-1.jpeg"].path).convert("RGB"))
    large_box = [(60.0, 20.0, 260.0, 220.0)]  # a 200 px side; the training frames' most: 150
    measured = red_cell_radius_px(rgb)
    assert measured is not None and measured.cells >= scale_module.RULER_CIRCLES
    field = scale_module.image_scale(rgb, spec, None, large_box)
    assert field.source == "measured" and field.field_of_view

    # A ruler of few circles, or one of many that reads another scale (at which the cell
    # would be larger still), is taken for a misreading of a crop.
    few = ScaleEstimate(measured.radius_px, scale_module.RULER_CIRCLES - 1, 0.05, 1.0)
    many_far = ScaleEstimate(measured.radius_px * 2, 20, 0.05, 1.0)
    for misread in (few, many_far):
        monkeypatch.setattr(scale_module, "red_cell_radius_px", lambda image, m=misread: m)
        crop = scale_module.image_scale(rgb, spec, None, large_box)
        assert crop.source == "assumed" and not crop.field_of_view
        typical = field.um_per_px * scale_module.TYPICAL_CELL_SIDE / 200.0
        assert crop.um_per_px == pytest.approx(typical)
