"""The heap settings of app/core/memory.py on this machine's glibc: freed heap really goes
back to the system, measured in this process's own resident memory."""

import re
import sys
from pathlib import Path

import pytest

from app.core.memory import cap_malloc_arenas, return_free_heap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def _resident_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def test_freed_heap_in_the_middle_of_the_heap_goes_back_to_the_system():
    # 160 MiB of 64 KiB blocks (under malloc's mmap threshold: they live in the heap); the
    # last one is kept, so the freed space is not at the heap's top, where malloc would give
    # it back by itself.
    blocks = [bytearray(64 * 1024) for _ in range(2560)]
    pin = blocks[-1]
    del blocks
    before = _resident_mib()
    assert return_free_heap() is True
    after = _resident_mib()
    assert before - after > 100, (before, after)
    del pin


def test_the_arena_cap_takes_effect_and_zero_leaves_the_default():
    assert cap_malloc_arenas(2) is True
    assert cap_malloc_arenas(0) is False
