"""Damaged files, for tests of what refuses them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal


def corrupt(
    path: Path,
    how: Literal["flip", "replace"] = "flip",
    *,
    at: int | None = None,
    data: bytes = b"",
) -> Path:
    """Damage `path` in place and return it. `flip` inverts every bit of the byte at offset
    `at` (default: the middle byte): the size stays, the SHA-256 changes. `replace` writes
    `data` instead of the contents."""
    if how == "replace":
        path.write_bytes(data)
    elif how == "flip":
        content = bytearray(path.read_bytes())
        content[len(content) // 2 if at is None else at] ^= 0xFF
        path.write_bytes(bytes(content))
    else:
        raise ValueError(f"unknown way to corrupt a file: {how!r}")
    return path
