"""Fit the model on the chosen source, with a distribution strategy and resumable backups."""

from __future__ import annotations

import json
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model_core.store.entries import StoreError, load_entry
from model_core.store.manifest import Localisation, Preprocessing, WhiteBalance
from training.dataprep.copy_originals import train_copy_groups
from training.pipeline.config import TRAIN_BACKGROUND_RGB, Strategy, TrainConfig
from training.pipeline.data import (
    LabelledImages,
    class_names_of,
    list_originals,
    list_split,
    load_images,
    stratified_holdout,
)
from training.pipeline.datasets import (
    augmented_copies,
    crop_bank,
    evaluation_dataset,
    training_dataset,
)
from training.pipeline.model import build_model, step_decay

STRATEGIES: tuple[Strategy, ...] = typing.get_args(Strategy)


@dataclass
class TrainResult:
    model: keras.Model
    class_names: list[str]
    preprocessing: Preprocessing
    history: dict[str, list[float]]
    seconds_per_epoch: float
    validation: LabelledImages | None
    counts: dict[str, int | float | None] = field(default_factory=dict)
    """Run results recorded beside the settings (image counts, replicas, best epoch, ...)."""


class EpochHistory(keras.callbacks.Callback):
    """Keeps every epoch's metrics in a file beside the backup, so a resumed run reports
    the whole history, not only the epochs after the interruption."""

    def __init__(self, path: Path, resuming: bool) -> None:
        super().__init__()
        self.path = path
        self.epochs: dict[int, dict[str, float]] = {}
        if resuming and path.is_file():
            self.epochs = {int(k): v for k, v in json.loads(path.read_text()).items()}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs[epoch] = {key: float(value) for key, value in (logs or {}).items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.epochs))

    def history(self) -> dict[str, list[float]]:
        ordered = [self.epochs[epoch] for epoch in sorted(self.epochs)]
        return {
            key: [logs.get(key, float("nan")) for logs in ordered]
            for key in (ordered[0] if ordered else {})
        }


def configure_devices(cpu_replicas: int) -> None:
    """Split the CPU into logical devices; must run before TensorFlow touches a device."""
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
        )


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "one-device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "multi-worker":
        from training.pipeline.cluster import multi_worker_strategy

        return multi_worker_strategy()
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def load_training_data(
    config: TrainConfig,
) -> tuple[list[str], LabelledImages, LabelledImages | None]:
    """Class names, training images and validation images for the configured source."""
    images_dir = Path(config.data_dir) / "images"
    class_names = class_names_of(images_dir / "TRAIN")
    if config.source == "train-folder":
        paths, labels = list_split(images_dir / "TRAIN", class_names, config.limit_per_class)
        groups = None
        if config.holds_out():
            started = time.perf_counter()
            groups, doubtful = train_copy_groups(config.data_dir, class_names, paths)
            print(
                f"copies matched to {len(set(groups.tolist()))} train originals "
                f"({doubtful} doubtful) in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        kept, held_out = stratified_holdout(
            labels,
            config.validation_fraction,
            _holdout_seed(config),
            groups,
            config.folds,
            config.fold,
            config.fold_method,
        )
        copies = load_images(paths, labels)
        validation = _subset(copies, held_out) if len(held_out) else None
        return class_names, _subset(copies, kept), validation
    if config.source != "originals":
        raise ValueError(f"unknown source {config.source!r}; expected originals or train-folder")
    originals = load_images(
        *list_originals(config.data_dir, class_names, "train", config.limit_per_class)
    )
    kept, held_out = stratified_holdout(
        originals.labels,
        config.validation_fraction,
        _holdout_seed(config),
        folds=config.folds,
        fold=config.fold,
        fold_method=config.fold_method,
    )
    train = _subset(originals, kept)
    if len(held_out) == 0:
        return class_names, train, None
    validation = augmented_copies(
        _subset(originals, held_out), config.validation_copies, config, config.seed + 1
    )
    return class_names, train, validation


def _holdout_seed(config: TrainConfig) -> int:
    return config.seed if config.holdout_seed is None else config.holdout_seed


def _subset(data: LabelledImages, indices: np.ndarray) -> LabelledImages:
    return LabelledImages(
        data.images[indices], data.labels[indices], [data.paths[i] for i in indices]
    )


def training_preprocessing(config: TrainConfig) -> Preprocessing:
    """The input transform a run trains with, and its manifest records."""
    # Validated like a manifest's (the window's bounds), every other parameter the default.
    localisation = (
        Localisation.model_validate({"window": config.window}) if config.localise else None
    )
    balance = (
        WhiteBalance.model_validate({"reference_rgb": TRAIN_BACKGROUND_RGB})
        if config.white_balance
        else None
    )
    return Preprocessing(
        antialias=True,
        localisation=localisation,
        flip_average=config.flip_average,
        white_balance=balance,
    )


def start_from(model: keras.Model, entry: Path, class_names: list[str]) -> None:
    """Fine-tuning: copy the weights of the model-store entry in `entry` into `model`, built
    afresh for this run; a StoreError unless the entry's classes, input size and every
    weight's shape are the run's."""
    manifest, source = load_entry(entry)
    if manifest.class_names != class_names:
        raise StoreError(
            f"{entry} classifies {manifest.class_names}, this run's classes are {class_names}"
        )
    input_size = tuple(model.input_shape[1:3])
    if tuple(manifest.input_size) != input_size:
        raise StoreError(f"{entry} takes {manifest.input_size} inputs, this run {input_size}")
    weights = source.get_weights()
    expected = [tuple(weight.shape) for weight in model.get_weights()]
    if [tuple(weight.shape) for weight in weights] != expected:
        raise StoreError(f"{entry}'s network differs from this run's (--arch)")
    model.set_weights(weights)
    print(f"starting from the weights of {entry}", flush=True)


def train(config: TrainConfig, extra_callbacks: tuple = ()) -> TrainResult:
    """Train a fresh model as configured and return it with its history."""
    keras.utils.set_random_seed(config.seed)
    preprocessing = training_preprocessing(config)
    class_names, train_data, validation = load_training_data(config)
    strategy = make_strategy(config.strategy)
    bank_counts: dict[str, int | float] = {}
    if config.localise:
        started = time.perf_counter()
        train_data, missing = crop_bank(train_data, config, preprocessing, config.seed + 2)
        bank_counts = {
            "bank_windows": len(train_data),
            "bank_no_cell_share": round(missing, 4),
            "bank_seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"cell windows: {len(train_data)}, no cell in {missing:.2%}, "
            f"{bank_counts['bank_seconds']} s",
            flush=True,
        )
    dataset, steps = training_dataset(
        train_data,
        config,
        preprocessing,
        balanced=config.source == "originals",
        windows=config.localise,
    )
    with strategy.scope():
        model = build_model(len(class_names), config.input_size, config.dropout, config.arch)
        if config.init_from is not None:
            start_from(model, Path(config.init_from), class_names)
        model.compile(
            optimizer=keras.optimizers.Adam(config.initial_lr),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
            # XLA makes a CPU training step ~20% faster; left to Keras under other strategies.
            jit_compile=True if config.strategy == "default" else "auto",
        )
    one_hot = lambda x, y: (x, tf.one_hot(y, len(class_names)))  # noqa: E731
    callbacks = [
        keras.callbacks.LearningRateScheduler(step_decay(config.initial_lr, config.lr_drop_every)),
        *extra_callbacks,
    ]
    epoch_history = None
    if config.backup_dir is not None:
        backup_dir = Path(config.backup_dir)
        resuming = backup_dir.is_dir() and any(backup_dir.iterdir())
        # Beside the backup, named after it: runs whose backups share a parent keep apart.
        epoch_history = EpochHistory(
            backup_dir.with_name(f"{backup_dir.name}.history.json"), resuming
        )
        callbacks += [keras.callbacks.BackupAndRestore(str(config.backup_dir)), epoch_history]
    validation_data = best_weights = None
    if validation is not None:
        validation_data = evaluation_dataset(
            validation, config.input_size, preprocessing, config.batch_size
        ).map(one_hot)
        if config.restore_best:
            best_weights = keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.epochs, restore_best_weights=True
            )
            callbacks.append(best_weights)
    started = time.perf_counter()
    history = model.fit(
        dataset.map(one_hot),
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=2 if _quiet() else 1,
        shuffle=False,  # the data set shuffles itself; Keras ignores (and warns of) True here
    )
    elapsed = time.perf_counter() - started
    epochs_run = max(1, len(history.history.get("loss", [])))
    full_history = epoch_history.history() if epoch_history else history.history
    if epoch_history:
        epoch_history.path.unlink(missing_ok=True)  # the run is complete
    return TrainResult(
        model=model,
        class_names=class_names,
        preprocessing=preprocessing,
        history={k: [float(v) for v in values] for k, values in full_history.items()},
        seconds_per_epoch=elapsed / epochs_run,
        validation=validation,
        counts={
            "train_images": len(train_data),
            "validation_images": 0 if validation is None else len(validation),
            "steps_per_epoch": steps,
            "replicas": strategy.num_replicas_in_sync,
            "best_epoch": None if best_weights is None else best_weights.best_epoch + 1,
            **bank_counts,
        },
    )


def _quiet() -> bool:
    import sys

    return not sys.stdout.isatty()
