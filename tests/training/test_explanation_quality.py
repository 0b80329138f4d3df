import numpy as np
import pytest

from training.studies.explanation_quality import baseline_map, energy_share, pointing_hit


def test_pointing_game_with_and_without_tolerance():
    heat = np.zeros((240, 320), np.float32)
    heat[100, 50] = 1.0
    box = [[60, 90, 120, 150]]
    assert not pointing_hit(heat, box)
    assert pointing_hit(heat, box, tolerance=15)
    assert pointing_hit(heat, [[40, 90, 120, 150], [200, 0, 300, 10]])


def test_energy_share_counts_mass_inside_the_boxes():
    heat = np.zeros((10, 10), np.float32)
    heat[2:4, 2:4] = 1.0
    heat[8, 8] = 4.0
    assert energy_share(heat, [[2, 2, 3, 3]]) == pytest.approx(0.5)
    assert energy_share(np.zeros((4, 4)), [[0, 0, 1, 1]]) == 0.0


def test_baselines():
    centre = baseline_map("centre", (240, 320), np.random.default_rng(0))
    assert np.unravel_index(np.argmax(centre), centre.shape) in {
        (119, 159),
        (120, 160),
        (119, 160),
        (120, 159),
    }
    noise = baseline_map("random", (24, 32), np.random.default_rng(0))
    assert noise.shape == (24, 32) and 0 <= noise.min() and noise.max() <= 1


def test_cell_box_baseline_fills_the_box_and_falls_back_to_the_centre():
    rng = np.random.default_rng(0)
    boxed = baseline_map("cell box", (240, 320), rng, (40, 100, 80, 160))
    assert np.unravel_index(np.argmax(boxed), boxed.shape) in {
        (129, 59),
        (130, 60),
        (129, 60),
        (130, 59),
    }
    assert boxed[:100].max() == 0 and boxed[:, 80:].max() == 0 and boxed[100:160, 40:80].min() > 0
    np.testing.assert_array_equal(
        baseline_map("cell box", (24, 32), rng), baseline_map("centre", (24, 32), rng)
    )


def test_a_cell_windows_map_is_scored_where_the_window_was_cut(tmp_path):
    from model_core.runtime import ModelRuntime, configure_tensorflow
    from model_core.store.entries import load_entry, write_manifest
    from model_core.store.manifest import Localisation, Preprocessing
    from tests.utils.models import publish_tiny_model
    from training.studies.explanation_quality import frame_map, input_map

    directory, manifest, _ = publish_tiny_model(tmp_path)
    write_manifest(
        directory,
        manifest.model_copy(
            update={"preprocessing": Preprocessing(antialias=True, localisation=Localisation())}
        ),
    )
    manifest, model = load_entry(directory)
    runtime = ModelRuntime(manifest, model, directory, configure_tensorflow())
    low_res = np.zeros((4, 4), np.float32)
    low_res[1, 2] = 1.0  # hottest in the window's upper right
    cell_box = (150, 100, 170, 120)  # window: 112 px around (160, 110)
    full = frame_map(runtime, low_res, (240, 320, 3), cell_box)
    assert full.shape == (240, 320)
    assert full[:, :104].max() == 0 and full[:54].max() == 0 and full[:, 216:].max() == 0
    y, x = np.unravel_index(np.argmax(full), full.shape)
    assert 54 <= y < 110 and 160 <= x < 216
    at_input = input_map(runtime, full, cell_box)
    assert at_input.shape == manifest.input_size
    np.testing.assert_array_equal(
        frame_map(runtime, low_res, (240, 320, 3), None).shape, (240, 320)
    )
