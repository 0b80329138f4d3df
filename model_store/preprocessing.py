"""The one implementation of the model's input transform, run by training and serving."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from model_store.manifest import Preprocessing


def to_model_input(
    rgb: tf.Tensor | np.ndarray, input_size: tuple[int, int], spec: Preprocessing
) -> tf.Tensor:
    """Resize RGB pixels ([H, W, 3] or [N, H, W, 3], uint8 or float 0..255) to the input size
    and scale them; returns float32."""
    resized = tf.image.resize(
        tf.cast(rgb, tf.float32), input_size, method=spec.resize_method, antialias=spec.antialias
    )
    return resized * spec.scale + spec.offset


def decode_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """Decode JPEG bytes to RGB uint8 the way libjpeg's default (PIL's) does: the accurate
    integer DCT and fancy upsampling, so training sees the pixels the service will see."""
    return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")
