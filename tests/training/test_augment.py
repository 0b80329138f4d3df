"""Augmentation: the data set's geometry (with shear), the OpenCV twin of the TensorFlow
path, and the cheap flips and rotations of the crop bank."""

import dataclasses

import numpy as np
import tensorflow as tf

from training.pipeline.augment import augment_batch, augment_frames, tight_crops
from training.pipeline.config import LEGACY_DEFAULTS, AugmentConfig, TrainConfig
from training.pipeline.datasets import dihedral_batch


def _frames() -> np.ndarray:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    frames[:, 10:30, 20:40] = (120, 60, 170)
    return frames


def test_opencv_augmentation_draws_and_warps_like_tensorflow():
    frames = _frames()
    config = AugmentConfig(rotation_degrees=20, shift_fraction=0.1, shear=0.2, color_jitter=0.1)
    expected = augment_batch(frames, tf.constant([5, 6]), config).numpy()
    actual = augment_frames(frames, tf.constant([5, 6]), config)
    assert actual.dtype == np.float32 and actual.shape == frames.shape
    # Both warp bilinearly with black fill; they differ only by float rounding.
    assert np.abs(actual - expected).mean() < 0.01
    assert np.abs(actual - expected).max() < 1.0


def test_shear_changes_the_geometry_and_zero_shear_draws_as_before():
    frames = _frames()
    plain = AugmentConfig(shear=0.0, color_jitter=0.0)
    sheared = dataclasses.replace(plain, shear=0.2)
    seed = tf.constant([1, 2])
    assert not np.allclose(augment_batch(frames, seed, plain), augment_batch(frames, seed, sheared))
    identity = AugmentConfig(
        rotation_degrees=0,
        shift_fraction=0,
        zoom_fraction=0,
        flips=False,
        shear=0.0,
        color_jitter=0.0,
    )
    np.testing.assert_allclose(augment_batch(frames, seed, identity), frames, atol=1e-3)


def test_dihedral_batch_gives_flips_and_quarter_turns_of_each_image():
    image = np.arange(4 * 4 * 1, dtype=np.float32).reshape(1, 4, 4, 1)
    batch = np.repeat(image, 64, axis=0)
    out = dihedral_batch(tf.constant(batch), tf.constant([0, 1])).numpy()
    variants = {
        np.rot90(m, k).tobytes()
        for m in (image[0, :, :, 0], image[0, ::-1, :, 0])
        for k in range(4)
    }
    seen = {o[:, :, 0].tobytes() for o in out}
    assert seen <= variants and len(seen) >= 6


def test_records_from_before_the_localiser_mean_the_whole_frame():
    record = TrainConfig(input_size=(128, 128)).to_record()
    for key in LEGACY_DEFAULTS:
        record.pop(key)
    record["augmentation"].pop("shear")
    legacy = TrainConfig.from_record(record)
    assert legacy.localise is False and legacy.arch == "tutorial"
    assert legacy.holdout_seed is None and legacy.augmentation.shear == 0.0
    assert TrainConfig.from_record(TrainConfig().to_record()) == TrainConfig()


def test_tight_crops_black_out_beyond_a_square_about_the_centre_of_a_share_of_windows():
    windows = tf.fill([400, 50, 50, 3], 200.0)
    out = tight_crops(windows, tf.constant([7, 8]), 0.5).numpy()
    cropped = (out == 0).any(axis=(1, 2, 3))
    # About half the windows are cropped; the others are untouched.
    assert 0.4 < cropped.mean() < 0.6
    np.testing.assert_array_equal(out[~cropped], 200.0)
    for window in out[cropped]:
        kept = window[..., 0] > 0
        rows, columns = np.flatnonzero(kept.any(axis=1)), np.flatnonzero(kept.any(axis=0))
        # What is kept is one block: a square of 60-100% of the side, whose centre lies
        # within 10% of the side of the window's, cut by the window's edges where it reaches
        # them (as a crop shifted to lie inside its image).
        assert kept.sum() == len(rows) * len(columns)
        spans = [span for span in (rows, columns) if span[0] > 0 and span[-1] < 49]
        assert all(29 <= len(span) <= 50 for span in spans)
        if len(spans) == 2:
            assert abs(len(rows) - len(columns)) <= 1
            for span in spans:
                assert abs((span[0] + span[-1] + 1) / 2 - 25) <= 5 + 1
        assert min(len(rows), len(columns)) >= 29 - 5
        assert np.all(window[kept] == 200.0)
    np.testing.assert_array_equal(tight_crops(windows, tf.constant([7, 8]), 0.0), windows)
