"""Decoding uploads: every supported kind of image becomes 8-bit RGB; hostile ones are
refused from the header."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from app.core.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType
from app.engine.images import decode_image
from tests.utils.images import (
    encode,
    exif_rotated_jpeg,
    png_bomb,
    rgba_png,
    sixteen_bit_png,
    smear_like_rgb,
)

LIMIT = 25_000_000


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_supported_formats_decode_to_rgb(fmt):
    rgb = smear_like_rgb(64, 48)
    decoded = decode_image(encode(Image.fromarray(rgb), fmt), LIMIT)
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    if fmt in ("PNG", "BMP", "TIFF"):
        np.testing.assert_array_equal(decoded, rgb)


def test_greyscale_becomes_three_equal_channels():
    grey = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    decoded = decode_image(encode(Image.fromarray(grey, "L")), LIMIT)
    assert decoded.shape == (48, 64, 3)
    np.testing.assert_array_equal(decoded[..., 0], grey)
    np.testing.assert_array_equal(decoded[..., 2], grey)


def test_sixteen_bit_is_scaled_to_eight():
    decoded = decode_image(sixteen_bit_png(), LIMIT)
    assert decoded.dtype == np.uint8
    assert decoded[0, 0, 0] == 0 and decoded[0, -1, 0] == 255


def test_rgba_is_composited_over_white():
    decoded = decode_image(rgba_png(), LIMIT)
    # 200 red at 50% alpha over white -> about (227, 127, 127)
    np.testing.assert_allclose(decoded[0, 0], [227, 127, 127], atol=2)


def test_exif_orientation_is_applied():
    rgb = smear_like_rgb(64, 48)
    decoded = decode_image(exif_rotated_jpeg(rgb, orientation=6), LIMIT)
    assert decoded.shape == (64, 48, 3)  # orientation 6: rotate 90 degrees clockwise


def test_decompression_bomb_is_refused_from_its_header():
    bomb = png_bomb(40000, 40000)
    assert len(bomb) < 4 * 1024 * 1024
    tracemalloc.start()
    with pytest.raises(PayloadTooLarge, match="40000x40000 pixels"):
        decode_image(bomb, LIMIT)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024 * 1024  # decoding would need 1.6 GB


@pytest.mark.parametrize(
    "payload, error, code",
    [
        (b"", InvalidImage, "empty_image"),
        (b"just some text, not an image", InvalidImage, "invalid_image"),
        (b"GIF89a\x01\x00\x01\x00", UnsupportedMediaType, "unsupported_media_type"),
        (encode(Image.fromarray(np.zeros((1, 1, 3), np.uint8))), InvalidImage, "image_too_small"),
    ],
)
def test_refusals_carry_their_codes(payload, error, code):
    with pytest.raises(error) as raised:
        decode_image(payload, LIMIT)
    assert raised.value.code == code


def test_truncated_jpeg_is_invalid():
    jpeg = encode(Image.fromarray(smear_like_rgb()), "JPEG")
    with pytest.raises(InvalidImage):
        decode_image(jpeg[: len(jpeg) // 2], LIMIT)
