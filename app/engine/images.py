"""Turn uploaded bytes into RGB pixels safely: format and size are checked from the
header before anything is decoded into memory."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from app.core.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

SUPPORTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
}
MIN_IMAGE_SIDE = 8
EXIF_ORIENTATION = 0x0112
# Magic numbers of the formats above, so text and garbage are told apart from images.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
_UNSUPPORTED_SIGNATURES = {
    b"GIF8": "GIF",
    b"%PDF": "PDF",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"\x00\x00\x01\x00": "ICO",
}


def decode_image(encoded: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image -> RGB uint8 [H, W, 3], EXIF orientation applied."""
    if not encoded:
        raise InvalidImage("the image is empty (0 bytes)", code="empty_image")
    for signature, name in _UNSUPPORTED_SIGNATURES.items():
        if encoded.startswith(signature):
            raise UnsupportedMediaType(
                f"{name} images are not supported; send one of {', '.join(SUPPORTED_FORMATS)}"
            )
    if not encoded.startswith(_SIGNATURES):
        raise InvalidImage(
            "the bytes are not an image this service decodes (expected "
            f"{', '.join(SUPPORTED_FORMATS)}); they start with {encoded[:8]!r}"
        )
    try:
        image = _open_header(encoded)
        _check_header(image, max_pixels)
    except (InvalidImage, PayloadTooLarge, UnsupportedMediaType):
        raise
    except Exception as error:  # Pillow's plugins raise many types on hostile headers
        raise InvalidImage(f"cannot read the image header: {error}") from None
    try:
        return _to_rgb(_upright(image))
    except MemoryError:
        raise
    except Exception as error:  # likewise for corrupt image data
        raise InvalidImage(
            f"cannot decode the {image.format} image: {error}", code="corrupt_image"
        ) from None


def _open_header(encoded: bytes) -> Image.ImageFile.ImageFile:
    """What `Image.open` does for our formats (read the header, decode nothing) minus its
    decompression-bomb check, which `_check_header` replaces for uploads with a limit and a
    message of ours. Pillow's own guard stays on for every other caller in the process."""
    Image.init()
    prefix = encoded[:16]
    for name in SUPPORTED_FORMATS:
        factory, accept = Image.OPEN[name]
        verdict = accept(prefix) if accept is not None else True
        if isinstance(verdict, str):  # recognised, but a variant Pillow cannot read
            raise InvalidImage(f"cannot read the {name} image: {verdict}")
        if verdict:
            return factory(io.BytesIO(encoded), "")
    raise InvalidImage("cannot identify the image format")


def check_dimensions(width: int, height: int, max_pixels: int, subject: str = "image is") -> None:
    """The size rules every image meets, from its header or a tensor's declared shape, before
    any pixels exist: at most `max_pixels`, at least MIN_IMAGE_SIDE on each side."""
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{subject} {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:g} megapixels",
            code="image_too_large",
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidImage(
            f"{subject} {width}x{height} pixels; the minimum is {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}",
            code="image_too_small",
        )


def _check_header(image: Image.Image, max_pixels: int) -> None:
    check_dimensions(*image.size, max_pixels)
    if getattr(image, "n_frames", 1) > 1 and image.format != "TIFF":
        raise UnsupportedMediaType(f"animated {image.format} images are not supported")


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; the image itself (not a copy, as
    `exif_transpose` would make) when there is nothing to turn."""
    if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Greyscale, palette, 16-bit and alpha images all become 8-bit RGB (alpha over white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if pixels.max() > 255 else 255.0
        grey = np.clip(pixels * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))
