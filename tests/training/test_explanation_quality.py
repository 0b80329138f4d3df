import numpy as np
import pytest

from training.explanation_quality import baseline_map, energy_share, pointing_hit


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
    assert np.unravel_index(np.argmax(centre), centre.shape) in {(119, 159), (120, 160),
                                                                  (119, 160), (120, 159)}
    noise = baseline_map("random", (24, 32), np.random.default_rng(0))
    assert noise.shape == (24, 32) and 0 <= noise.min() and noise.max() <= 1
