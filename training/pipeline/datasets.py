"""tf.data pipelines from decoded images to model batches."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from model_core.inputs.transform import model_pixels, scale_pixels, to_model_input
from model_core.store.manifest import Preprocessing
from training.pipeline.augment import (
    augment_batch,
    augment_frames,
    color_jitter,
    stain_jitter,
    tight_crops,
    zoom_windows,
)
from training.pipeline.config import TrainConfig
from training.pipeline.data import LabelledImages


def training_dataset(
    data: LabelledImages,
    config: TrainConfig,
    spec: Preprocessing,
    balanced: bool,
    windows: bool = False,
) -> tuple[tf.data.Dataset, int]:
    """Endless shuffled (or class-balanced) augmented batches, and the steps per epoch.
    `windows`: `data` is a bank of cell windows at the input size (`crop_bank`), augmented
    by flips, 90-degree rotations, zoom, colour and stain jitter and tight crops; otherwise
    full frames, augmented and resized."""
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
        batch_seed = tf.stack([tf.constant(config.seed, tf.int64), batch_index])
        if windows:
            batch_images = tf.cast(batch_images, tf.float32)
            if config.augment:
                augmentation = config.augmentation
                batch_images = dihedral_batch(batch_images, batch_seed)
                if augmentation.window_zoom > 0:
                    zoom_seed = tf.random.experimental.stateless_fold_in(batch_seed, 1)
                    batch_images = zoom_windows(batch_images, zoom_seed, augmentation.window_zoom)
                if augmentation.color_jitter > 0:
                    batch_images = color_jitter(batch_images, batch_seed, augmentation)
                if augmentation.stains():
                    stain_seed = tf.random.experimental.stateless_fold_in(batch_seed, 2)
                    batch_images = stain_jitter(batch_images, stain_seed, augmentation)
                if augmentation.tight_crop_share > 0:
                    crop_seed = tf.random.experimental.stateless_fold_in(batch_seed, 3)
                    batch_images = tight_crops(
                        batch_images, crop_seed, augmentation.tight_crop_share
                    )
            inputs = scale_pixels(batch_images, spec)
        else:
            if config.augment:
                batch_images = augment_batch(batch_images, batch_seed, config.augmentation)
            inputs = to_model_input(batch_images, config.input_size, spec)
        return inputs, tf.gather(labels, batch_indices)

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
            .numpy()
            .round()
            .astype(np.uint8)
        )
    return LabelledImages(
        np.concatenate(batches),
        np.tile(data.labels, copies + 1),
        list(data.paths) * (copies + 1),
    )


def dihedral_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Each square image [B, S, S, C] in one of its 8 flips and 90-degree rotations: a random
    transpose, then random horizontal and vertical flips."""
    draws = tf.random.stateless_uniform([3, tf.shape(images)[0], 1, 1, 1], seed=seed) < 0.5
    images = tf.where(draws[0], tf.transpose(images, [0, 2, 1, 3]), images)
    images = tf.where(draws[1], tf.reverse(images, [2]), images)
    return tf.where(draws[2], tf.reverse(images, [1]), images)


def cell_windows(
    data: LabelledImages, input_size: tuple[int, int], spec: Preprocessing
) -> tuple[np.ndarray, list]:
    """Every frame through `model_pixels` (the cell's window, or the whole frame where no
    cell is found): float32 [N, h, w, 3] in 0..255, and the boxes (None: whole frame)."""
    pixels = np.empty((len(data), *input_size, 3), np.float32)
    boxes = []
    for index, frame in enumerate(data.images):
        pixels[index], box = model_pixels(frame, input_size, spec)
        boxes.append(box)
    return pixels, boxes


def crop_bank(
    data: LabelledImages, config: TrainConfig, spec: Preprocessing, seed: int
) -> tuple[LabelledImages, float]:
    """Each frame plus `config.frame_copies()` augmentations of its full frame (the geometry
    and colour of the data set's own copies), localised and cut like serving does: uint8
    windows [N * (copies + 1), h, w, 3], and the share of frames where no cell was found."""
    windows, missing = [], 0
    for copy in range(config.frame_copies() + 1):
        frames = (
            data.images
            if copy == 0
            else augment_frames(data.images, tf.constant([seed, copy]), config.augmentation)
            .round()
            .astype(np.uint8)
        )
        pixels, boxes = cell_windows(
            LabelledImages(frames, data.labels, data.paths), config.input_size, spec
        )
        windows.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        missing += sum(box is None for box in boxes)
    copies = config.frame_copies() + 1
    return LabelledImages(
        np.concatenate(windows), np.tile(data.labels, copies), list(data.paths) * copies
    ), missing / (len(data) * copies)


def evaluation_dataset(
    data: LabelledImages, input_size: tuple[int, int], spec: Preprocessing, batch_size: int = 64
) -> tf.data.Dataset:
    """Un-augmented model inputs with labels, in order."""
    if spec.localisation is not None:
        pixels, _ = cell_windows(data, input_size, spec)
        return (
            tf.data.Dataset.from_tensor_slices((pixels, data.labels))
            .batch(batch_size)
            .map(lambda x, y: (scale_pixels(x, spec), y))
            .prefetch(tf.data.AUTOTUNE)
        )
    return (
        tf.data.Dataset.from_tensor_slices((data.images, data.labels))
        .batch(batch_size)
        .map(
            lambda x, y: (to_model_input(x, input_size, spec), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
