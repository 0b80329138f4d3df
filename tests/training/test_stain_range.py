"""`measure-stain`: the TRAIN frames' red-cell stain range, written into an entry's manifest
(and its card), which serving then flags against."""

from __future__ import annotations

import pytest

from model_core.store.entries import read_manifest
from tests.utils.models import publish_tiny_model
from training.pipeline.data import DataError
from training.studies.stain_range import measure_stain_range


def test_the_range_spans_the_training_frames_and_lands_in_the_manifest(tmp_path, example_data_dir):
    entry, _, _ = publish_tiny_model(tmp_path / "store")
    manifest = measure_stain_range(entry, example_data_dir, every=1, least=4)
    stain = manifest.preprocessing.stain_range
    assert stain is not None and read_manifest(entry) == manifest
    assert stain.hue[0] < stain.hue[1] and stain.saturation[0] < stain.saturation[1]
    # the bundled smears' red cells: pink (about -16 to 7 about red), saturation 29-42
    assert -30 <= stain.hue[0] <= -10 and 0 <= stain.hue[1] <= 10
    assert 20 <= stain.saturation[0] <= 35 and 35 <= stain.saturation[1] <= 50
    assert "stain_unfamiliar" in (entry / "README.md").read_text()


def test_too_few_frames_is_a_clear_error(tmp_path, example_data_dir):
    entry, _, _ = publish_tiny_model(tmp_path / "store")
    with pytest.raises(DataError, match="too few TRAIN frames"):
        measure_stain_range(entry, example_data_dir, every=4, least=20)
