"""The memory settings of app/core/memory.py on this machine's glibc and kernel: freed heap
and paged-out library pages really go back to the system, measured in this process's own
resident memory."""

import mmap
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core.memory import cap_malloc_arenas, page_out_libraries, return_free_heap

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


def _mapping_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    resident, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            resident += int(line.split()[1])
    return resident


def test_a_read_only_file_mapping_is_paged_out_and_comes_back_when_read(tmp_path):
    library = tmp_path / "libstand-in.so"
    with library.open("wb") as written:  # on disk, as a library is: clean pages
        written.write(np.random.default_rng(0).bytes(32 * 1024 * 1024))
        written.flush()
        os.fsync(written.fileno())
    with library.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as m:
        checksum = sum(m[offset] for offset in range(0, len(m), 4096))  # touch every page
        assert _mapping_rss_kib(library) > 30 * 1024
        assert page_out_libraries("/no/such/library/") == 0
        assert page_out_libraries(library.name) >= 32 * 1024 * 1024
        assert _mapping_rss_kib(library) < 4 * 1024
        # Nothing is lost: the pages come back, the same bytes.
        assert sum(m[offset] for offset in range(0, len(m), 4096)) == checksum
        assert _mapping_rss_kib(library) > 30 * 1024
