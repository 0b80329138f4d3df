"""The benchmark's request bodies: the real TEST_SIMPLE JPEGs of the blood-cell data set."""

from __future__ import annotations

from pathlib import Path

TEST_SIMPLE_GLOB = "images/TEST_SIMPLE/*/*.jpeg"


class MissingImages(Exception):
    """The data set is not where the benchmark was told to look."""


def test_simple_jpegs(data_dir: Path) -> list[bytes]:
    """The encoded bytes of every TEST_SIMPLE JPEG, in a stable order."""
    paths = sorted(Path(data_dir).glob(TEST_SIMPLE_GLOB))
    if not paths:
        raise MissingImages(
            f"no JPEGs match {Path(data_dir) / TEST_SIMPLE_GLOB}; the benchmark sends the real "
            "TEST_SIMPLE images of the blood-cell data set: pass --data-dir <folder holding "
            "images/TEST_SIMPLE>"
        )
    return [path.read_bytes() for path in paths]
