"""Random affine geometry and colour jitter for a batch, in one interpolation, seeded."""

from __future__ import annotations

import math

import tensorflow as tf

from training.config import AugmentConfig


def _uniform(shape, seed, low, high):
    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _affine_transforms(batch: int, height: int, width: int, config: AugmentConfig, seeds):
    """Rows of 8 projective coefficients mapping each output pixel to its input pixel:
    input = M (output - centre) + centre - shift, M = rotation @ flips / zoom."""
    angle = _uniform([batch], seeds[0], -1.0, 1.0) * math.radians(config.rotation_degrees)
    zoom = _uniform([batch], seeds[1], 1 - config.zoom_fraction, 1 + config.zoom_fraction)
    shift = _uniform([batch, 2], seeds[2], -config.shift_fraction, config.shift_fraction)
    if config.flips:
        flips = tf.sign(_uniform([batch, 2], seeds[3], -1.0, 1.0))
    else:
        flips = tf.ones([batch, 2])
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    m00, m01 = cos * flips[:, 0], -sin * flips[:, 1]
    m10, m11 = sin * flips[:, 0], cos * flips[:, 1]
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    tx, ty = shift[:, 0] * width, shift[:, 1] * height
    zeros = tf.zeros([batch])
    return tf.stack(
        [m00, m01, cx - m00 * cx - m01 * cy - tx, m10, m11, cy - m10 * cx - m11 * cy - ty,
         zeros, zeros],
        axis=1,
    )


def _color_jitter(images, config: AugmentConfig, seeds):
    batch = tf.shape(images)[0]
    low, high = 1 - config.color_jitter, 1 + config.color_jitter
    brightness = _uniform([batch, 1, 1, 1], seeds[4], low, high)
    contrast = _uniform([batch, 1, 1, 1], seeds[5], low, high)
    saturation = _uniform([batch, 1, 1, 1], seeds[6], low, high)
    images = images * brightness
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean
    grey = tf.reduce_mean(images, axis=3, keepdims=True)
    return tf.clip_by_value(grey + (images - grey) * saturation, 0.0, 255.0)


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
