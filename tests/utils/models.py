"""A tiny real Keras model published into a temporary store, and other real entries:
copies of an entry under a new version, and a model whose device runs out of memory."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import tensorflow as tf

from model_core.store.entries import read_manifest, write_manifest
from model_core.store.manifest import Manifest, Preprocessing
from training.pipeline.config import TrainConfig
from training.pipeline.model import build_model
from training.pipeline.publish import publish
from training.pipeline.train import TrainResult

TINY_CLASSES = ["ALPHA", "BETA", "GAMMA"]


def publish_tiny_model(
    store_dir: Path, input_size: tuple[int, int] = (32, 32), model: keras.Model | None = None
) -> tuple[Path, Manifest, keras.Model]:
    """An untrained model of the real architecture (or `model`, built around it), published
    as the next version."""
    config = TrainConfig(store_dir=store_dir, model_name="tiny", input_size=input_size, epochs=0)
    result = TrainResult(
        model=model or build_model(len(TINY_CLASSES), input_size),
        class_names=TINY_CLASSES,
        preprocessing=Preprocessing(antialias=True),
        history={"loss": [1.0]},
        seconds_per_epoch=0.0,
        validation=None,
    )
    directory, manifest = publish(result, config)
    return directory, manifest, result.model


def copy_entry(source: Path, store_dir: Path, version: int) -> Path:
    """A copy of the entry at `source` as `version` of the same model in `store_dir`."""
    manifest = read_manifest(source)
    target = store_dir / manifest.name / str(version)
    shutil.copytree(source, target)
    write_manifest(target, manifest.model_copy(update={"version": version}))
    return target


@keras.saving.register_keras_serializable(package="wbc_tests")
class ExhaustsMemoryForBatches(keras.layers.Layer):
    """Passes its input through, but allocates 2^58 bytes per batch item beyond the first:
    TensorFlow itself raises ResourceExhaustedError, as on a GPU out of memory, while the
    warm-up's batch of one passes. No allocator can grant it, so nothing is ever taken."""

    def call(self, inputs):
        extra_items = tf.shape(inputs)[0] - 1
        demand = tf.zeros(tf.stack([extra_items * 2**28, 2**28]), tf.float32)
        return inputs + tf.reduce_sum(demand)


def exhausts_memory_model(input_size: tuple[int, int] = (32, 32)) -> keras.Model:
    """The tiny model with `ExhaustsMemoryForBatches` after its softmax."""
    base = build_model(len(TINY_CLASSES), input_size)
    return keras.Model(base.inputs, ExhaustsMemoryForBatches(name="exhausts_memory")(base.output))
