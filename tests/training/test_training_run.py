"""Short real training runs on the example smears laid out as the data set (two originals
per class: one trains, one validates)."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from model_core.store.entries import StoreError, load_entry, read_manifest, sha256_file
from training.cli import build_parser, config_from_args
from training.pipeline.config import TrainConfig
from training.pipeline.data import list_split, load_images
from training.pipeline.evaluate import evaluate_entry, predict_probabilities
from training.pipeline.publish import publish
from training.pipeline.train import train

pytestmark = pytest.mark.slow


def _quick_config(data_dir, tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(
        data_dir=data_dir,
        store_dir=tmp_path / "store",
        input_size=(64, 64),
        epochs=1,
        batch_size=16,
        samples_per_epoch=32,
        limit_per_class=4,
        validation_copies=1,
        **overrides,
    )


def test_train_publish_reload_and_evaluate(example_data_dir, tmp_path):
    data_dir = example_data_dir
    config = _quick_config(data_dir, tmp_path, localise=False)
    result = train(config)
    directory, manifest = publish(result, config)

    assert result.class_names == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert manifest.training["replicas"] == 1
    assert manifest.training["input_size"] == [64, 64]
    for name, digest in manifest.artefacts.items():
        assert sha256_file(directory / name) == digest

    reloaded_manifest, reloaded = load_entry(directory)
    assert reloaded_manifest == manifest
    simple = load_images(*list_split(data_dir / "images" / "TEST_SIMPLE", manifest.class_names))
    assert len(simple) == 8
    np.testing.assert_allclose(
        predict_probabilities(reloaded, simple, manifest),
        predict_probabilities(result.model, simple, manifest),
        atol=1e-6,
    )

    metrics = evaluate_entry(directory, data_dir, ("test_simple",))
    report = metrics["test_simple"]
    assert report["count"] == len(simple)
    assert sum(map(sum, report["confusion_matrix"]["rows_true_cols_predicted"])) == len(simple)
    assert 0.0 <= report["ece"] <= 1.0
    assert read_manifest(directory).metrics["test_simple"] == report
    reports = directory / "reports"
    assert json.loads((reports / "metrics.json").read_text())["test_simple"] == report
    for picture in ("confusion_test_simple.png", "training_curves.png"):
        assert (reports / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cell_window_run_trains_on_a_crop_bank_and_records_the_localiser(
    example_data_dir, tmp_path
):
    data_dir = example_data_dir
    # The window given on the command line reaches the manifest serving reads.
    args = build_parser().parse_args(["train", "--window", "144"])
    assert args.window == 144 and build_parser().parse_args(["train"]).window == 112
    config = _quick_config(
        data_dir,
        tmp_path,
        source="originals",
        arch="tutorial",
        localise=True,
        bank_copies=2,
        window=config_from_args(args).window,
    )
    result = train(config)
    directory, manifest = publish(result, config)

    assert manifest.preprocessing.localisation.window == 144
    assert TrainConfig.from_record(manifest.training).window == 144
    assert manifest.training["localise"] is True and manifest.training["arch"] == "tutorial"
    # 2 originals per class, 1 of each held out: 4 frames, each plus 2 augmented copies.
    assert manifest.training["bank_windows"] == 4 * 3
    assert manifest.training["bank_no_cell_share"] <= 0.1
    assert result.model.get_layer("stem").filters == 12
    assert result.validation is not None and len(result.validation) == 4 * 2

    metrics = evaluate_entry(directory, data_dir, ("test_simple",))
    assert metrics["test_simple"]["count"] == 8
    simple = load_images(*list_split(data_dir / "images" / "TEST_SIMPLE", manifest.class_names))
    _, reloaded = load_entry(directory)
    np.testing.assert_allclose(
        predict_probabilities(reloaded, simple, manifest),
        predict_probabilities(result.model, simple, manifest),
        atol=1e-6,
    )


class _StopAtSecondEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_run_resumes_from_its_backup(example_data_dir, tmp_path):
    config = _quick_config(example_data_dir, tmp_path, backup_dir=tmp_path / "backup")
    config.epochs = 2
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=(_StopAtSecondEpoch(),))
    assert any((tmp_path / "backup").iterdir())
    resumed = train(config)
    # Only the second epoch was left to run, but the history covers both.
    assert len(resumed.history["loss"]) == 2
    assert resumed.history["learning_rate"] == [pytest.approx(config.initial_lr)] * 2


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [weight.copy() for weight in self.model.get_weights()]


def test_fine_tuning_starts_from_an_entrys_weights_and_refuses_another_network(
    example_data_dir, tmp_path
):
    config = _quick_config(example_data_dir, tmp_path)
    directory, _ = publish(train(config), config)
    _, published = load_entry(directory)

    start = _WeightsAtStart()
    tuned_config = _quick_config(example_data_dir, tmp_path, init_from=directory)
    tuned = train(tuned_config, extra_callbacks=(start,))
    for started, source in zip(start.weights, published.get_weights(), strict=True):
        np.testing.assert_array_equal(started, source)
    # It trained on from there: the weights moved, and the record says where it started.
    assert any(
        not np.array_equal(after, before)
        for after, before in zip(tuned.model.get_weights(), start.weights, strict=True)
    )
    assert tuned_config.to_record()["init_from"] == str(directory)
    args = build_parser().parse_args(["train", "--init-from", str(directory)])
    assert config_from_args(args).init_from == directory

    other_size = _quick_config(example_data_dir, tmp_path, init_from=directory)
    other_size.input_size = (48, 48)
    with pytest.raises(StoreError, match="inputs, this run"):
        train(other_size)
    other_network = _quick_config(example_data_dir, tmp_path, init_from=directory, arch="wide")
    with pytest.raises(StoreError, match="network differs"):
        train(other_network)


def test_mirrored_strategy_over_two_cpu_replicas(example_data_dir, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "--data-dir",
            str(example_data_dir),
            "--store-dir",
            str(tmp_path / "store"),
            "--backup-dir",
            str(tmp_path / "backup"),
            "--strategy",
            "mirrored",
            "--cpu-replicas",
            "2",
            "--epochs",
            "1",
            "--samples-per-epoch",
            "32",
            "--batch-size",
            "16",
            "--limit-per-class",
            "4",
            "--input-size",
            "64",
            "--validation-copies",
            "0",
            "--no-evaluate",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    manifest = read_manifest(tmp_path / "store" / "wbc-squeezenet" / "1")
    assert manifest.training["replicas"] == 2
    assert manifest.training["strategy"] == "mirrored"
    assert "published wbc-squeezenet v1" in completed.stdout


def test_refit_on_every_original_carries_the_held_out_runs_temperature(
    example_data_dir, tmp_path, capsys
):
    from training.cli import main

    store = tmp_path / "store"
    quick = [
        "--data-dir",
        str(example_data_dir),
        "--store-dir",
        str(store),
        "--source",
        "originals",
        "--bank-copies",
        "1",
        "--input-size",
        "64",
        "--epochs",
        "1",
        "--samples-per-epoch",
        "32",
        "--batch-size",
        "16",
        "--limit-per-class",
        "4",
        "--validation-copies",
        "1",
        "--no-evaluate",
        "--seed",
        "5",
    ]
    assert main(["train", *quick, "--backup-dir", str(tmp_path / "held-out")]) == 0
    held_out = read_manifest(store / "wbc-squeezenet" / "1")
    assert (
        main(
            [
                "train",
                *quick,
                "--backup-dir",
                str(tmp_path / "refit"),
                "--validation-fraction",
                "0",
                "--temperature-from",
                str(store / "wbc-squeezenet" / "1"),
            ]
        )
        == 0
    ), capsys.readouterr().err[-2000:]
    refit = read_manifest(store / "wbc-squeezenet" / "2")

    # One original per class held out, then none: the refit trained on twice the frames.
    assert refit.training["bank_windows"] == 2 * held_out.training["bank_windows"]
    assert "validation" not in refit.metrics and "validation" in held_out.metrics
    assert refit.calibration.temperature == held_out.calibration.temperature
    assert refit.calibration.fitted_on.startswith("carried over from wbc-squeezenet v1")
    # The out-of-distribution features are the refit's own, fitted on images/TRAIN.
    assert refit.feature_distribution is not None
    assert refit.feature_distribution.mean != held_out.feature_distribution.mean


@pytest.mark.parametrize("command", ["train", "evaluate", "evaluate-localiser", "cross-validate"])
def test_cli_help(command):
    completed = subprocess.run(
        [sys.executable, "-m", "training", command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0
    assert "--data-dir" in completed.stdout


def test_cross_validation_holds_out_each_original_once_and_its_temperature_carries(
    example_data_dir, tmp_path, capsys
):
    from training.cli import main
    from training.pipeline.calibration import carried_temperature, fit_temperature

    store, study = tmp_path / "store", tmp_path / "cv"
    quick = [
        "--data-dir",
        str(example_data_dir),
        "--source",
        "originals",
        "--bank-copies",
        "1",
        "--input-size",
        "64",
        "--epochs",
        "1",
        "--samples-per-epoch",
        "32",
        "--batch-size",
        "16",
        "--limit-per-class",
        "4",
        "--validation-copies",
        "1",
        "--seed",
        "5",
    ]
    assert main(["cross-validate", *quick, "--folds", "2", "--output-dir", str(study)]) == 0, (
        capsys.readouterr().err[-2000:]
    )
    report = json.loads((study / "cv_report.json").read_text())

    # Two originals per class, two folds: each fold holds out one original of each class
    # (the original and one augmented copy of it), and each original is held out once.
    folds = [np.load(study / f"fold-{fold}.npz") for fold in range(2)]
    held_out = [sorted({path.rsplit("/", 1)[1] for path in fold["paths"]}) for fold in folds]
    assert [len(names) for names in held_out] == [4, 4]
    assert not set(held_out[0]) & set(held_out[1])
    assert sorted(held_out[0] + held_out[1]) == sorted(
        path.name for path in (example_data_dir / "originals").iterdir()
    )
    assert [fold["copies"] for fold in report["per_fold"]] == [8, 8]
    assert report["pooled"]["count"] == 16
    logits = np.concatenate([fold["logits"] for fold in folds])
    labels = np.concatenate([fold["labels"] for fold in folds])
    assert report["calibration"]["temperature"] == pytest.approx(fit_temperature(logits, labels))
    assert report["training"]["folds"] == 2 and report["training"]["seed"] == 5
    for fold in range(2):  # each fold trained into its own store, on the other originals
        manifest = read_manifest(study / f"fold-{fold}" / "wbc-squeezenet" / "1")
        assert (manifest.training["folds"], manifest.training["fold"]) == (2, fold)
        assert manifest.training["bank_windows"] == 2 * 4  # 4 originals, each + 1 copy

    # Run again: the folds are done, so nothing trains; the report is pooled again.
    assert main(["cross-validate", *quick, "--folds", "2", "--output-dir", str(study)]) == 0
    assert not (study / "fold-0" / "wbc-squeezenet" / "2").exists()

    # A refit of the same recipe and seed on every original carries the pooled temperature.
    assert (
        main(
            [
                "train",
                *quick,
                "--store-dir",
                str(store),
                "--no-evaluate",
                "--backup-dir",
                str(tmp_path / "refit"),
                "--validation-fraction",
                "0",
                "--temperature-from",
                str(study / "cv_report.json"),
            ]
        )
        == 0
    ), capsys.readouterr().err[-2000:]
    refit = read_manifest(store / "wbc-squeezenet" / "1")
    assert refit.calibration.temperature == report["calibration"]["temperature"]
    assert refit.calibration.fitted_on.startswith(
        f"carried over from the 2-fold cross-validation in {study / 'cv_report.json'}, the "
        "same recipe and seed with each of 2 folds of the train originals held out in turn: "
        "16 out-of-fold images (each original with augmented copies of it (1 each); each "
        "train original held out once)"
    )
    # A study folder names its report; a study of other settings does not resume.
    assert carried_temperature(study, refit.training) == refit.calibration
    assert (
        main(["cross-validate", *quick, "--seed", "6", "--folds", "2", "--output-dir", str(study)])
        == 2
    )
    assert "was trained by another study (differs in seed)" in capsys.readouterr().err
    # Another seed's refit may not carry it.
    assert (
        main(
            [
                "train",
                *quick,
                "--seed",
                "6",
                "--store-dir",
                str(store),
                "--no-evaluate",
                "--validation-fraction",
                "0",
                "--temperature-from",
                str(study / "cv_report.json"),
            ]
        )
        == 2
    )
    assert "differs in seed" in capsys.readouterr().err


def test_colour_recipe_and_review_fit_on_held_out_originals(example_data_dir, tmp_path):
    """White balance, stain jitter and window zoom reach the manifest; evaluate-review fits
    the threshold on the held-out copies and scores every colour shift through the served
    path; the card reports it."""
    from model_core.store.manifest import ReviewPolicy
    from training.pipeline.config import TRAIN_BACKGROUND_RGB, AugmentConfig
    from training.studies.colour_shifts import SHIFTS
    from training.studies.review_report import evaluate_review

    config = _quick_config(
        example_data_dir,
        tmp_path,
        localise=True,
        white_balance=True,
        validation_fraction=0.5,
        augmentation=AugmentConfig(
            hue_shift=4, saturation_jitter=0.2, value_jitter=0.1, channel_gain=0.05,
            window_zoom=0.05,
        ),
    )  # fmt: skip
    result = train(config)
    directory, manifest = publish(result, config)
    balance = manifest.preprocessing.white_balance
    assert balance is not None and balance.reference_rgb == TRAIN_BACKGROUND_RGB
    assert TrainConfig.from_record(manifest.training).augmentation.hue_shift == 4

    report = evaluate_review(
        directory, example_data_dir, 0.9, splits=("test_simple",), shifted_splits=("test_simple",)
    )
    policy = read_manifest(directory).review
    assert isinstance(policy, ReviewPolicy) and policy.target_accuracy == 0.9
    assert 0 <= policy.expected_coverage <= 1
    assert set(report["sets"]) == {"validation", "test_simple"}
    assert set(report["sets"]["test_simple"]) == set(SHIFTS)
    assert set(report["sets"]["validation"]) == {"unchanged"}
    for row in report["sets"]["test_simple"].values():
        assert row["count"] == 8
        assert row["wrong_and_unflagged"] <= 1 - row["accuracy"] + 1e-9
    card = (directory / "README.md").read_text()
    assert "## Review flag and colour robustness" in card
    assert f"{policy.min_calibrated_confidence:.3f}"[:4] in card
    assert (directory / "reports" / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
