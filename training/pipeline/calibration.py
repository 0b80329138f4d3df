"""Fit what serving needs to qualify a prediction: a softmax temperature (calibrated
confidence) and the training distribution of pooled features (out-of-distribution flag)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from model_core.runtime import ModelRuntime, configure_tensorflow
from model_core.store.entries import StoreError, load_entry, read_manifest, write_manifest
from model_core.store.manifest import Calibration, FeatureDistribution, Manifest
from training.pipeline.config import TrainConfig
from training.pipeline.data import DataError, LabelledImages, list_split, load_images
from training.pipeline.datasets import evaluation_dataset
from training.pipeline.model import FEATURES_LAYER, FIRE_MODULES
from training.studies.model_card import write_model_card

OOD_QUANTILE = 0.995
TEMPERATURE_BOUNDS = (0.05, 20.0)
TEMPERATURE_TOLERANCE = 1e-5  # in log T: the temperature to about 0.001%
COVARIANCE_SHRINKAGE = 0.1
COVARIANCE_FLOOR = 1e-6
# The last two fire modules: colour and texture at 8x8 as well as the class evidence at 4x4.
OOD_LAYERS = (f"fire{len(FIRE_MODULES) - 1}", FEATURES_LAYER)


def logits_and_features(
    model: keras.Model, manifest: Manifest, data: LabelledImages, layers: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-softmax scores [N, classes] and the pooled activations of `layers`, concatenated
    [N, K], from the serving runtime's own compiled forward pass, so the features fitted
    here are exactly the ones serving measures."""
    runtime = ModelRuntime(manifest, model, Path(), configure_tensorflow(), feature_layers=layers)
    logits, features = [], []
    for inputs, _ in evaluation_dataset(data, manifest.input_size, manifest.preprocessing):
        forward = runtime.forward(inputs.numpy())
        logits.append(forward.logits)
        features.append(forward.features)
    return np.concatenate(logits), np.concatenate(features)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Guo et al. 2017: the T in [TEMPERATURE_BOUNDS] minimising the NLL of
    softmax(logits / T). The NLL is convex in 1/T, so it has one minimum in log T, which
    bounded Brent search finds to `TEMPERATURE_TOLERANCE` (relative)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    logits, rows = np.asarray(logits, dtype=np.float64), np.arange(len(labels))

    def nll(log_temperature: float) -> float:
        scaled = log_softmax(logits / np.exp(log_temperature), axis=1)
        return float(-scaled[rows, labels].mean())

    low, high = np.log(TEMPERATURE_BOUNDS)
    fit = minimize_scalar(
        nll, bounds=(low, high), method="bounded", options={"xatol": TEMPERATURE_TOLERANCE}
    )
    return float(np.exp(fit.x))


def fit_feature_distribution(
    features: np.ndarray, layers: list[str], fitted_on: str, quantile: float = OOD_QUANTILE
) -> FeatureDistribution:
    """Mean and shrunk inverse covariance of the features; the threshold is the `quantile`
    of the training images' own distances.

    The covariance is shrunk towards its diagonal by `COVARIANCE_SHRINKAGE`, so a few hundred
    images give a stable inverse: scikit-learn's `ShrunkCovariance` on the standardised
    features (there its target, the mean variance times the identity, is the identity, so
    0.9 * correlation + 0.1 * identity), scaled back by the standard deviations. The
    hand-written estimate it replaces did the same from `np.cov` (which divides by n - 1,
    where scikit-learn divides by n: distances and threshold are both sqrt(n / (n - 1))
    times larger, so the same images are flagged). Not Ledoit-Wolf: its intensity is
    fitted, and its target would be one variance for features of very different scales."""
    from sklearn.covariance import ShrunkCovariance

    mean = features.mean(axis=0)
    centred = features - mean
    # The floor (the old diagonal jitter) keeps a feature constant in training finite.
    scale = np.sqrt(centred.var(axis=0) + COVARIANCE_FLOOR)
    standardised = ShrunkCovariance(shrinkage=COVARIANCE_SHRINKAGE, assume_centered=True).fit(
        centred / scale
    )
    precision = standardised.precision_ / np.outer(scale, scale)
    distances = np.sqrt(standardised.mahalanobis(centred / scale))
    return FeatureDistribution(
        layers=layers,
        mean=mean.tolist(),
        precision=precision.tolist(),
        threshold=float(np.quantile(distances, quantile)),
        threshold_quantile=quantile,
        fitted_on=fitted_on,
    )


CV_REPORT_FILE = "cv_report.json"  # written by training.studies.cross_validation

# Training settings that may differ between a run with held-out originals and its refit on
# every original, for the refit to carry the held-out run's temperature.
_REFIT_SETTINGS = frozenset(
    {
        "validation_fraction",
        "folds",
        "fold",
        "fold_method",
        "holdout_seed",
        "temperature_from",
        "init_from",
        "store_dir",
        "backup_dir",
        "data_dir",
        "model_name",
        "strategy",
        "cpu_replicas",
        "evaluate",
    }
)


def _donor(source: Path) -> tuple[dict, Calibration | None, str]:
    """The training record, temperature and name of a model-store entry folder or of a
    cross-validation report (`CV_REPORT_FILE`, or the study folder holding it)."""
    source = Path(source)
    if (source / CV_REPORT_FILE).is_file():
        source = source / CV_REPORT_FILE
    if source.is_file():
        try:
            report = json.loads(source.read_text())
            calibration = Calibration(**report["calibration"])
            return (
                report["training"],
                calibration,
                f"the {report['folds']}-fold cross-validation in {source}",
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"--temperature-from: {source} is not a cross-validation report: {error}"
            ) from error
    try:
        donor = read_manifest(source)
    except StoreError as error:
        raise DataError(f"--temperature-from: {error}") from error
    return donor.training, donor.calibration, f"{donor.name} v{donor.version}"


def carried_temperature(source: Path, record: dict) -> Calibration:
    """The temperature of `source`, an entry trained by the same recipe and seed as the one
    whose training `record` is given but with train originals held out, or the
    cross-validation report of that recipe and seed: an out-of-sample fit for a refit on
    every original, which has no held-out images of its own."""
    training, calibration, name = _donor(source)
    if calibration is None:
        raise DataError(f"{source} has no temperature to carry over")
    ours = TrainConfig.from_record(record)
    if ours.holds_out():
        raise DataError(
            "--temperature-from is for a refit on every original "
            "(--validation-fraction 0); with held-out originals the temperature "
            "is fitted on them"
        )
    donor = TrainConfig.from_record(training)
    ours_record, theirs = ours.to_record(), donor.to_record()
    different = sorted(
        key for key in set(ours_record) - _REFIT_SETTINGS if ours_record[key] != theirs[key]
    )
    if different:
        raise DataError(
            f"{source} was trained by another recipe than this entry "
            f"(differs in {', '.join(different)}): its temperature does not carry over"
        )
    if not donor.holds_out():
        raise DataError(
            f"{source} held out no train originals: its temperature is not out of sample"
        )
    held_out = (
        f"each of {donor.folds} folds of the train originals held out in turn"
        if donor.folds
        else f"{donor.validation_fraction:.0%} of the train originals held out"
    )
    return Calibration(
        temperature=calibration.temperature,
        fitted_on=f"carried over from {name}, the same recipe and seed with {held_out}: "
        f"{calibration.fitted_on}",
    )


def calibrate_entry(
    directory: Path, config: TrainConfig, every: int = 6, temperature_from: Path | None = None
) -> Manifest:
    """Fit the temperature on the validation images (as `config` holds them out), or carry it
    over from `temperature_from` when the entry was trained on every train original (with
    neither, the entry has no temperature and serving reports no calibrated confidence), and
    fit the feature distribution on every `every`-th image of images/TRAIN (the data set's own
    augmented copies of the train originals, JPEG-compressed like the smears users send);
    store both in the manifest."""
    from training.pipeline.train import load_training_data

    manifest, model = load_entry(directory)
    layers = list(OOD_LAYERS)
    calibration = None
    if temperature_from is not None:
        calibration = carried_temperature(temperature_from, manifest.training)
    elif config.holds_out():  # a refit on every original holds nothing out
        validation = load_training_data(config)[2]
        if validation is None:
            raise DataError(f"{directory} holds out train originals, but none were found")
        logits, _ = logits_and_features(model, manifest, validation, layers)
        calibration = Calibration(
            temperature=fit_temperature(logits, validation.labels),
            fitted_on=f"{len(validation)} validation images ("
            + (
                "held-out train originals"
                if config.source == "originals"
                else "copies of held-out train originals in images/TRAIN"
            )
            + ")",
        )
    paths, labels = list_split(Path(config.data_dir) / "images" / "TRAIN", manifest.class_names)
    picked = np.arange(0, len(paths), every)
    train_sample = load_images([paths[i] for i in picked], labels[picked])
    _, features = logits_and_features(model, manifest, train_sample, layers)
    distribution = fit_feature_distribution(
        features, layers, f"{len(train_sample)} images of images/TRAIN (every {every}th)"
    )
    updated = read_manifest(directory).model_copy(
        update={"calibration": calibration, "feature_distribution": distribution}
    )
    write_manifest(directory, updated)
    write_model_card(directory)
    return updated
