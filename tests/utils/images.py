"""Factories for test images: the project's own real smears (examples/), the full data set's
files when it is there, and generated edge cases."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.pipeline.config import DEFAULT_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"


def data_dir_from_environment() -> Path:
    """WBC_DATA_DIR, a relative value read from the repository root (like the default, which
    lies beside it), so the answer does not depend on where pytest was started."""
    configured = os.environ.get("WBC_DATA_DIR")
    if not configured:
        return DEFAULT_DATA_DIR
    return (ROOT / Path(configured).expanduser()).resolve()


DATA_DIR = data_dir_from_environment()


@dataclass(frozen=True)
class Smear:
    """A real smear of examples/: its file, its class and its annotated WBC boxes."""

    path: Path
    label: str
    wbc_boxes: list[list[int]]


def example_smears() -> list[Smear]:
    """The eight real smears that live in the project (two per class, 320x240 JPEG), one of
    each class first (in class order), then the second of each."""
    index = json.loads((EXAMPLES_DIR / "examples.json").read_text())["images"]
    smears = [
        Smear(EXAMPLES_DIR / name, entry["label"], entry["wbc_boxes_xyxy"])
        for name, entry in sorted(index.items())
    ]
    firsts: dict[str, Smear] = {}
    for smear in smears:
        firsts.setdefault(smear.label, smear)
    return list(firsts.values()) + [s for s in smears if s not in firsts.values()]


def test_simple_images() -> list[Path]:
    """The full data set's TEST_SIMPLE files, sorted; empty when the data set is absent."""
    return sorted((DATA_DIR / "images" / "TEST_SIMPLE").glob("*/*.jpeg"))


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def smear_like_rgb(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """Pinkish noise with a purple blob: decodable, deterministic, not from the data set."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = (230, 180, 190)
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    blob = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(width, height) / 5) ** 2
    pixels[blob] = (120, 60, 170)
    return pixels


def sixteen_bit_png(width: int = 64, height: int = 48) -> bytes:
    ramp = np.tile(np.linspace(0, 65535, width, dtype=np.uint16), (height, 1))
    return encode(Image.fromarray(ramp))


def rgba_png(width: int = 64, height: int = 48) -> bytes:
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = 128
    return encode(Image.fromarray(pixels, mode="RGBA"))


def exif_rotated_jpeg(rgb: np.ndarray, orientation: int = 6) -> bytes:
    """A JPEG whose stored pixels must be rotated per its EXIF Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(rgb), "JPEG", exif=exif.tobytes(), quality=95)


def png_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A valid-header PNG claiming width x height greyscale pixels, all zero, a few MB on the
    wire: decoding it would allocate width * height bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows_per_piece = 1000
    zero_rows = b"\x00" * ((width + 1) * rows_per_piece)
    # Raw deflate with a full flush is byte-aligned with no back-references, so one
    # compressed piece can be repeated; the zlib wrapper's Adler-32 is computed alongside.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = deflate.compress(zero_rows) + deflate.flush(zlib.Z_FULL_FLUSH)
    final_block = deflate.flush(zlib.Z_FINISH)
    checksum = 1
    for _ in range(height // rows_per_piece):
        checksum = zlib.adler32(zero_rows, checksum)
    body = (
        b"\x78\xda" + piece * (height // rows_per_piece) + final_block + struct.pack(">I", checksum)
    )
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def write_example_data_set(root: Path) -> Path:
    """The eight example smears laid out like the full data set, for short real training and
    evaluation runs: each is an original (BloodImage_0000N.jpg, listed as `train` in
    splits.csv, with a labels.csv row) and an image of TRAIN, TEST and TEST_SIMPLE, whose WBC
    boxes go to test_simple_wbc_boxes.json. Two originals per class: a stratified hold-out
    keeps one of each for training and one for validation."""
    labels, splits, boxes = [",Image,Category"], ["original,category,split"], {}
    for index, smear in enumerate(sorted(example_smears(), key=lambda s: s.path.name)):
        original = f"BloodImage_{index:05d}.jpg"
        (root / "originals").mkdir(parents=True, exist_ok=True)
        (root / "originals" / original).write_bytes(smear.path.read_bytes())
        labels.append(f",{index},{smear.label}")
        splits.append(f"{original},{smear.label},train")
        for split in ("TRAIN", "TEST", "TEST_SIMPLE"):
            folder = root / "images" / split / smear.label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / smear.path.name).write_bytes(smear.path.read_bytes())
        boxes[f"images/TEST_SIMPLE/{smear.label}/{smear.path.name}"] = {
            "original": f"originals/{original}",
            "wbc_boxes_xyxy": smear.wbc_boxes,
        }
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    (root / "splits.csv").write_text("\n".join(splits) + "\n")
    (root / "test_simple_wbc_boxes.json").write_text(
        json.dumps(
            {
                "image_size_wh": [320, 240],
                "box_format": "xmin,ymin,xmax,ymax in pixels of the 320x240 image",
                "images": boxes,
            },
            indent=1,
        )
        + "\n"
    )
    return root
