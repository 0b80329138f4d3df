"""tf.data pipelines from decoded images to model batches."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from model_store.manifest import Preprocessing
from model_store.preprocessing import to_model_input
from training.augment import augment_batch
from training.config import TrainConfig
from training.data import LabelledImages


def training_dataset(
    data: LabelledImages, config: TrainConfig, spec: Preprocessing, balanced: bool
) -> tuple[tf.data.Dataset, int]:
    """Endless shuffled (or class-balanced) augmented batches, and the steps per epoch."""
    images = tf.constant(data.images)
    if balanced:
        per_class = [
            tf.data.Dataset.from_tensor_slices(np.flatnonzero(data.labels == label))
            .shuffle(len(data), seed=config.seed + label, reshuffle_each_iteration=True)
            .repeat()
            for label in np.unique(data.labels)
        ]
        indices = tf.data.Dataset.sample_from_datasets(
            per_class, weights=[1.0 / len(per_class)] * len(per_class), seed=config.seed
        )
        steps = max(1, config.samples_per_epoch // config.batch_size)
    else:
        indices = (
            tf.data.Dataset.range(len(data))
            .shuffle(len(data), seed=config.seed, reshuffle_each_iteration=True)
            .repeat()
        )
        steps = max(1, math.ceil(len(data) / config.batch_size))
    labels = tf.constant(data.labels)

    def to_batch(batch_index, batch_indices):
        batch_images = tf.gather(images, batch_indices)
        if config.augment:
            batch_images = augment_batch(
                batch_images, tf.stack([tf.constant(config.seed, tf.int64), batch_index]),
                config.augmentation,
            )
        return to_model_input(batch_images, config.input_size, spec), tf.gather(
            labels, batch_indices
        )

    dataset = (
        indices.batch(config.batch_size, drop_remainder=True)
        .enumerate()
        .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset, steps


def augmented_copies(
    data: LabelledImages, copies: int, config: TrainConfig, seed: int
) -> LabelledImages:
    """Each image plus `copies` fixed augmentations of it (a deterministic validation set)."""
    if copies == 0:
        return data
    batches = [data.images]
    for copy in range(copies):
        batches.append(
            augment_batch(data.images, tf.constant([seed, copy]), config.augmentation)
            .numpy().round().astype(np.uint8)
        )
    return LabelledImages(
        np.concatenate(batches),
        np.tile(data.labels, copies + 1),
        list(data.paths) * (copies + 1),
    )


def evaluation_dataset(
    data: LabelledImages, input_size: tuple[int, int], spec: Preprocessing, batch_size: int = 64
) -> tf.data.Dataset:
    """Un-augmented model inputs with labels, in order."""
    return (
        tf.data.Dataset.from_tensor_slices((data.images, data.labels))
        .batch(batch_size)
        .map(lambda x, y: (to_model_input(x, input_size, spec), y),
             num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
