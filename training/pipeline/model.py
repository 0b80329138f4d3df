"""The tutorial's SqueezeNet-style network, with layer names that serving can rely on."""

from __future__ import annotations

import keras
from keras import layers

# (squeeze, expand) of each fire module; a 2x2 max-pool follows every one but the last.
FIRE_MODULES = ((12, 24), (24, 48), (32, 64), (24, 48), (18, 36), (12, 24))
STEM_FILTERS = 12
# `--arch`: name -> width multiplier of the stem and every fire module. 1.5x widths cost
# about 2.25x the multiply-adds of the tutorial's network at the same input size.
ARCHITECTURES = {"tutorial": 1.0, "wide": 1.5}
BN_MOMENTUM = 0.85

FEATURES_LAYER = f"fire{len(FIRE_MODULES)}"
EXPLANATION_LAYER = FEATURES_LAYER
LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"


def _conv_bn(x, filters: int, kernel_size: int, name: str):
    x = layers.Conv2D(filters, kernel_size, padding="same", activation="relu", name=name)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)


def _fire(x, squeeze: int, expand: int, name: str):
    """1x1 squeeze, then 1x1 and 3x3 expands of expand/2 filters each, concatenated."""
    squeezed = _conv_bn(x, squeeze, 1, f"{name}_squeeze")
    expand_1x1 = _conv_bn(squeezed, expand // 2, 1, f"{name}_expand1x1")
    expand_3x3 = _conv_bn(squeezed, expand // 2, 3, f"{name}_expand3x3")
    return layers.Concatenate(name=name)([expand_1x1, expand_3x3])


def build_model(
    num_classes: int,
    input_size: tuple[int, int] = (128, 128),
    dropout: float = 0.0,
    arch: str = "tutorial",
) -> keras.Model:
    """Conv(12, 5x5) + BN, six fire modules with max-pooling between, GAP, dense softmax
    (`arch="tutorial"`); other architectures widen every layer by ARCHITECTURES[arch].

    The tutorial's Dense(softmax) is split into Dense `logits` + Activation
    `probabilities` (the same function) so Grad-CAM can differentiate the logit."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    width = ARCHITECTURES[arch]
    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = _conv_bn(inputs, round(STEM_FILTERS * width), 5, "stem")
    for index, (squeeze, expand) in enumerate(FIRE_MODULES, start=1):
        x = _fire(x, round(squeeze * width), 2 * round(expand * width / 2), f"fire{index}")
        if index < len(FIRE_MODULES):
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    probabilities = layers.Activation("softmax", name=PROBABILITIES_LAYER)(logits)
    return keras.Model(inputs, probabilities, name="wbc_squeezenet")


def step_decay(initial_lr: float, drop_every: int = 10):
    """The tutorial's schedule: lr = initial * 0.5 ** floor((1 + epoch) / drop_every)."""

    def schedule(epoch: int, lr: float | None = None) -> float:
        return initial_lr * 0.5 ** ((1 + epoch) // drop_every)

    return schedule
