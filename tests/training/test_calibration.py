import shutil
from pathlib import Path

import numpy as np
import pytest

from model_core.store.entries import read_manifest, write_manifest
from training.pipeline.calibration import (
    carried_temperature,
    fit_feature_distribution,
    fit_temperature,
)
from training.pipeline.data import DataError

# v5 was trained with 10% of the train originals held out and its temperature fitted on them.
HELD_OUT_ENTRY = Path(__file__).resolve().parents[2] / "model_store" / "wbc-squeezenet" / "5"
# Its recipe where it differs from today's defaults.
HELD_OUT_RECIPE = [
    "--epochs",
    "9",
    "--label-smoothing",
    "0.1",
    "--dropout",
    "0.2",
    "--color-jitter",
    "0.1",
    "--no-flip-average",
]


def test_temperature_undoes_known_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 4))
    labels = np.array([rng.choice(4, p=np.exp(row) / np.exp(row).sum()) for row in true_logits])
    # A model three times too confident: the fitted temperature should be about 3.
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.1)


def _answers():
    rng = np.random.default_rng(42)
    labels = rng.integers(0, 4, 200)
    logits = rng.normal(0, 2, (200, 4))
    logits[np.arange(200), labels] += 1.5
    return logits, labels


def _nll(logits, labels, temperature):
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), labels].mean()


@pytest.mark.parametrize("scale, grid_fit", [(3.0, 6.71629778840577), (1.0, 2.2375126009014314)])
def test_temperature_is_the_exact_minimum_the_grid_search_approximated(scale, grid_fit):
    """scipy's bounded search replaced a 400-point grid refined in 0.1% steps: the fit moves
    within that step of the grid's (the numbers it gave here) and lowers the NLL, and it is
    the minimum to 1e-5."""
    logits, labels = _answers()
    fitted = fit_temperature(scale * logits, labels)
    assert fitted == pytest.approx(grid_fit, rel=1e-3)
    nll = _nll(scale * logits, labels, fitted)
    assert nll <= _nll(scale * logits, labels, grid_fit)
    for nearby in (fitted * (1 - 1e-4), fitted * (1 + 1e-4)):
        assert nll < _nll(scale * logits, labels, nearby)


def test_temperature_stays_within_its_bounds():
    """Always right (the sharper the better) or always wrong (the flatter): the fit goes to
    a bound and, unlike the grid's refinement (0.0485 and 20.6 here), not past it."""
    labels = np.array([0, 1, 0, 1])
    right = np.array([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    assert 0.05 <= fit_temperature(right, labels) < 0.0501
    assert 19.99 < fit_temperature(right[:, ::-1], labels) <= 20.0


def test_feature_distribution_is_the_hand_written_shrinkage():
    """scikit-learn's ShrunkCovariance on standardised features replaced 0.9 * np.cov + 0.1 *
    its diagonal: the same estimate, but from the covariance divided by n, not n - 1, so the
    precision is n / (n - 1) and the distances sqrt(n / (n - 1)) times the old numbers."""
    rng = np.random.default_rng(7)
    features = rng.normal(0, 1, (300, 5)) @ rng.normal(0, 1, (5, 5)) + rng.normal(0, 3, 5)
    distribution = fit_feature_distribution(features, ["a"], "x")
    n = len(features)
    assert distribution.mean[:2] == pytest.approx([3.75180326234936, 1.7942847956887302])
    precision = np.asarray(distribution.precision)
    assert precision[0, 0] == pytest.approx(0.23953637184249507 * n / (n - 1), rel=1e-5)
    assert precision[1, 2] == pytest.approx(0.300261807457375 * n / (n - 1), rel=1e-5)
    assert distribution.threshold == pytest.approx(
        4.190623502859428 * np.sqrt(n / (n - 1)), rel=1e-6
    )


def test_a_feature_constant_in_training_flags_any_change():
    rng = np.random.default_rng(3)
    features = np.column_stack([rng.normal(0, 1, 500), np.zeros(500)])
    distribution = fit_feature_distribution(features, ["a"], "x")
    precision = np.asarray(distribution.precision)
    assert np.isfinite(precision).all()
    moved = np.array([0.0, 0.01]) - distribution.mean  # 1% off the constant feature
    assert np.sqrt(moved @ precision @ moved) > 10 * distribution.threshold


def test_feature_distribution_threshold_and_distances():
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (5000, 3)) * [1.0, 2.0, 0.5] + [10, 0, -5]
    distribution = fit_feature_distribution(
        features, ["fire5", "fire6"], "synthetic", quantile=0.99
    )
    assert distribution.layers == ["fire5", "fire6"]
    np.testing.assert_allclose(distribution.mean, [10, 0, -5], atol=0.1)
    # For 3 standard normal dimensions the 99% quantile of the distance is about 3.37.
    assert distribution.threshold == pytest.approx(3.37, rel=0.07)
    precision = np.asarray(distribution.precision)
    far = np.array([10, 0, -5 + 0.5 * 6])  # six standard deviations along the narrow axis
    centred = far - np.asarray(distribution.mean)
    assert np.sqrt(centred @ precision @ centred) == pytest.approx(6.0, rel=0.05)


def refit_record(donor: Path = HELD_OUT_ENTRY, **changes) -> dict:
    """The training record of a refit of `donor`'s recipe and seed on every train original."""
    record = dict(read_manifest(donor).training)
    record.update(
        validation_fraction=0.0,
        backup_dir="/elsewhere",
        train_images=9957,
        validation_images=0,
        seconds_per_epoch=321.0,
        store_dir="/other-store",
    )
    record.pop("promoted_from", None)
    return record | changes


def test_refit_carries_the_temperature_of_its_held_out_run():
    donor = read_manifest(HELD_OUT_ENTRY)
    calibration = carried_temperature(HELD_OUT_ENTRY, refit_record())
    assert calibration.temperature == donor.calibration.temperature
    assert calibration.fitted_on.startswith(f"carried over from wbc-squeezenet v{donor.version}")
    assert "10% of the train originals held out" in calibration.fitted_on
    assert donor.calibration.fitted_on in calibration.fitted_on


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"seed": 99}, "seed"),
        ({"epochs": 6, "label_smoothing": 0.0}, "epochs, label_smoothing"),
        ({"input_size": [128, 128]}, "input_size"),
    ],
)
def test_temperature_of_another_recipe_is_refused(changes, named):
    with pytest.raises(DataError, match=f"differs in {named}\\)"):
        carried_temperature(HELD_OUT_ENTRY, refit_record(**changes))


def test_temperature_must_come_from_a_run_with_held_out_originals(tmp_path):
    donor = tmp_path / "entry"
    donor.mkdir()
    shutil.copy(HELD_OUT_ENTRY / "manifest.json", donor / "manifest.json")
    manifest = read_manifest(donor)
    write_manifest(
        donor,
        manifest.model_copy(update={"training": manifest.training | {"validation_fraction": 0.0}}),
    )
    with pytest.raises(DataError, match="held out no train originals"):
        carried_temperature(donor, refit_record(donor))
    write_manifest(donor, manifest.model_copy(update={"calibration": None}))
    with pytest.raises(DataError, match="no temperature to carry over"):
        carried_temperature(donor, refit_record(donor))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--temperature-from", str(HELD_OUT_ENTRY)], "is for a refit on every original"),
        (
            [
                *HELD_OUT_RECIPE,
                "--validation-fraction",
                "0",
                "--seed",
                "4",
                "--temperature-from",
                str(HELD_OUT_ENTRY),
            ],
            "differs in seed)",
        ),
        (["--validation-fraction", "0", "--temperature-from", "nowhere/7"], "no manifest.json"),
    ],
)
def test_train_refuses_a_temperature_that_would_not_carry_before_training(
    tmp_path, capsys, arguments, message
):
    from training.cli import main

    store = tmp_path / "store"
    assert main(["train", "--seed", "3", "--store-dir", str(store), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not store.exists()  # refused before any training or publishing
