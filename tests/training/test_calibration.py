import numpy as np
import pytest

from training.calibration import fit_feature_distribution, fit_temperature


def test_temperature_undoes_known_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 4))
    labels = np.array([rng.choice(4, p=np.exp(row) / np.exp(row).sum()) for row in true_logits])
    # A model three times too confident: the fitted temperature should be about 3.
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.1)


def test_feature_distribution_threshold_and_distances():
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (5000, 3)) * [1.0, 2.0, 0.5] + [10, 0, -5]
    distribution = fit_feature_distribution(features, ["fire5", "fire6"], "synthetic",
                                            quantile=0.99)
    assert distribution.layers == ["fire5", "fire6"]
    np.testing.assert_allclose(distribution.mean, [10, 0, -5], atol=0.1)
    # For 3 standard normal dimensions the 99% quantile of the distance is about 3.37.
    assert distribution.threshold == pytest.approx(3.37, rel=0.07)
    precision = np.asarray(distribution.precision)
    far = np.array([10, 0, -5 + 0.5 * 6])  # six standard deviations along the narrow axis
    centred = far - np.asarray(distribution.mean)
    assert np.sqrt(centred @ precision @ centred) == pytest.approx(6.0, rel=0.05)
