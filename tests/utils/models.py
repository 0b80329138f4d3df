"""A tiny real Keras model published into a temporary store."""

from __future__ import annotations

from pathlib import Path

import keras

from model_store.manifest import Manifest, Preprocessing
from training.config import TrainConfig
from training.model import build_model
from training.publish import publish
from training.train import TrainResult

TINY_CLASSES = ["ALPHA", "BETA", "GAMMA"]


def publish_tiny_model(
    store_dir: Path, input_size: tuple[int, int] = (32, 32)
) -> tuple[Path, Manifest, keras.Model]:
    """An untrained model of the real architecture, published as the next version."""
    config = TrainConfig(store_dir=store_dir, model_name="tiny", input_size=input_size, epochs=0)
    result = TrainResult(
        model=build_model(len(TINY_CLASSES), input_size), class_names=TINY_CLASSES,
        preprocessing=Preprocessing(antialias=True), history={"loss": [1.0]},
        seconds_per_epoch=0.0, validation=None,
    )
    directory, manifest = publish(result, config)
    return directory, manifest, result.model
