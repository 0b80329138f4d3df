"""Random affine geometry and colour jitter for a batch, in one interpolation, seeded."""

from __future__ import annotations

import math

import cv2
import numpy as np
import tensorflow as tf

from training.pipeline.config import TIGHT_CROP_OFFSET, TIGHT_CROP_SIDES, AugmentConfig


def _uniform(shape, seed, low, high):
    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _affine_transforms(batch: int, height: int, width: int, config: AugmentConfig, seeds):
    """Rows of 8 projective coefficients mapping each output pixel to its input pixel:
    input = M (output - centre) + centre - shift, M = rotation @ shear @ flips / zoom."""
    angle = _uniform([batch], seeds[0], -1.0, 1.0) * math.radians(config.rotation_degrees)
    zoom = _uniform([batch], seeds[1], 1 - config.zoom_fraction, 1 + config.zoom_fraction)
    shift = _uniform([batch, 2], seeds[2], -config.shift_fraction, config.shift_fraction)
    if config.flips:
        flips = tf.sign(_uniform([batch, 2], seeds[3], -1.0, 1.0))
    else:
        flips = tf.ones([batch, 2])
    # Keras 2.0's shear matrix [[1, -sin s], [0, cos s]]: rotation @ shear turns the second
    # column by angle + s.
    shear = 0.0
    if config.shear:  # its own seed, so runs without shear draw what they always drew
        shear_seed = tf.random.experimental.stateless_fold_in(seeds[0], 1)
        shear = _uniform([batch], shear_seed, -config.shear, config.shear)
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    cos_sheared, sin_sheared = tf.cos(angle + shear) / zoom, tf.sin(angle + shear) / zoom
    m00, m01 = cos * flips[:, 0], -sin_sheared * flips[:, 1]
    m10, m11 = sin * flips[:, 0], cos_sheared * flips[:, 1]
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    tx, ty = shift[:, 0] * width, shift[:, 1] * height
    zeros = tf.zeros([batch])
    return tf.stack(
        [
            m00,
            m01,
            cx - m00 * cx - m01 * cy - tx,
            m10,
            m11,
            cy - m10 * cx - m11 * cy - ty,
            zeros,
            zeros,
        ],
        axis=1,
    )


def _jitter_factors(batch, config: AugmentConfig, seeds):
    """Brightness, contrast and saturation factors, each [B, 1, 1, 1]."""
    low, high = 1 - config.color_jitter, 1 + config.color_jitter
    return [_uniform([batch, 1, 1, 1], seeds[index], low, high) for index in (4, 5, 6)]


def _color_jitter(images, config: AugmentConfig, seeds):
    brightness, contrast, saturation = _jitter_factors(tf.shape(images)[0], config, seeds)
    images = images * brightness
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean
    grey = tf.reduce_mean(images, axis=3, keepdims=True)
    return tf.clip_by_value(grey + (images - grey) * saturation, 0.0, 255.0)


def color_jitter(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Only the colour part of `augment_batch`: float [B, H, W, 3] in 0..255."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    return _color_jitter(images, config, seeds)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """uint8 or float [B, H, W, 3] in 0..255 -> augmented float32 in 0..255."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    shape = tf.shape(images)
    transforms = _affine_transforms(shape[0], shape[1], shape[2], config, seeds)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=config.fill_value,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    if config.color_jitter > 0:
        warped = _color_jitter(warped, config, seeds)
    return warped


def augment_frames(images: np.ndarray, seed: tf.Tensor, config: AugmentConfig) -> np.ndarray:
    """`augment_batch` with the same random draws, its geometry warped by OpenCV (an order
    of magnitude faster on a CPU than TensorFlow's projective transform): uint8 [B, H, W, 3]
    -> float32 in 0..255."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    batch, height, width = images.shape[:3]
    transforms = _affine_transforms(batch, height, width, config, seeds).numpy()
    factors = np.ones((3, batch), np.float32)
    if config.color_jitter > 0:
        draws = _jitter_factors(batch, config, seeds)
        factors = np.stack([factor.numpy().reshape(batch) for factor in draws])
    warped = np.empty(images.shape, np.float32)
    for index, (image, row) in enumerate(zip(images, transforms, strict=True)):
        frame = cv2.warpAffine(
            image.astype(np.float32),
            row[:6].reshape(2, 3),
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(config.fill_value,) * 3,
        )
        brightness, contrast, saturation = factors[:, index]
        frame *= brightness  # the same steps as _color_jitter, one frame at a time
        frame = (frame - frame.mean()) * contrast + frame.mean()
        grey = frame.mean(axis=2, keepdims=True)
        warped[index] = np.clip(grey + (frame - grey) * saturation, 0.0, 255.0)
    return warped


def stain_jitter(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Another lab's stain and another camera's colour, drawn per image: float [B, H, W, 3]
    in 0..255 -> the same with each channel scaled by a gain in [1 - g, 1 + g]
    (`channel_gain`: white balance), then in HSV the hue turned by up to `hue_shift`
    (OpenCV's 0-180 units), the saturation scaled by [1 - s, 1 + s] and the value by
    [1 - v, 1 + v]."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    batch = tf.shape(images)[0]

    def factors(index: int, spread: float, channels: int = 1) -> tf.Tensor:
        return _uniform([batch, 1, 1, channels], seeds[index], 1 - spread, 1 + spread)

    rgb = tf.clip_by_value(images * factors(0, config.channel_gain, 3) / 255.0, 0.0, 1.0)
    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(rgb), axis=3)
    turn = _uniform([batch, 1, 1], seeds[1], -1.0, 1.0) * (config.hue_shift / 180.0)
    hue = tf.math.floormod(hue + turn, 1.0)
    saturation = tf.clip_by_value(saturation * factors(2, config.saturation_jitter)[..., 0], 0, 1)
    value = tf.clip_by_value(value * factors(3, config.value_jitter)[..., 0], 0, 1)
    return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=3)) * 255.0


def zoom_windows(images: tf.Tensor, seed: tf.Tensor, zoom: float) -> tf.Tensor:
    """Square cell windows [B, S, S, 3] each zoomed in or out about its centre by a factor in
    [1 - zoom, 1 + zoom] (black beyond the window, as beyond a frame's edge in serving)."""
    batch, side = tf.shape(images)[0], tf.shape(images)[1]
    factor = _uniform([batch], seed, 1 - zoom, 1 + zoom)
    half = 0.5 / factor
    boxes = tf.stack([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half], axis=1)
    return tf.image.crop_and_resize(
        images, boxes, tf.range(batch), tf.stack([side, side]), extrapolation_value=0.0
    )


def tight_crops(images: tf.Tensor, seed: tf.Tensor, share: float) -> tf.Tensor:
    """Square cell windows [B, S, S, 3], a random `share` of them cut down to a tight crop
    of the cell: black beyond a square whose side is a `TIGHT_CROP_SIDES` fraction of the
    window's, centred within `TIGHT_CROP_OFFSET` of the side from the window's centre."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    batch, side = tf.shape(images)[0], tf.shape(images)[1]
    chosen = _uniform([batch, 1], seeds[0], 0.0, 1.0) < share
    half = _uniform([batch, 1], seeds[1], *TIGHT_CROP_SIDES) / 2.0
    centre = 0.5 + _uniform([batch, 2], seeds[2], -TIGHT_CROP_OFFSET, TIGHT_CROP_OFFSET)
    pixels = (tf.range(side, dtype=tf.float32)[tf.newaxis] + 0.5) / tf.cast(side, tf.float32)
    rows = (tf.abs(pixels - centre[:, :1]) <= half) | ~chosen
    columns = (tf.abs(pixels - centre[:, 1:]) <= half) | ~chosen
    inside = tf.cast(rows[:, :, tf.newaxis] & columns[:, tf.newaxis, :], images.dtype)
    return images * inside[..., tf.newaxis]
