"""The process's heap, kept small: glibc's malloc arenas capped, and freed heap returned to
the system once the model is loaded and then every few seconds.

glibc gives each thread that allocates under contention an arena of its own, up to 8 per
core, and an arena keeps what its threads freed for later; with the image threads, the model
worker and the runtimes' own threads that is memory held for ever. Capped at two arenas the
threads share, and trimmed after the model's load and warm-up (whose temporaries are freed
by then) and again periodically (explanation passes free tens of megabytes that malloc would
otherwise keep), the service holds less at rest and grows less under load
(docs/benchmarks.md). TensorFlow's libraries, most of whose pages its start-up touches and
the passes never use again, are handed back to the kernel once the model is warm
(`page_out_libraries`, Linux).
Elsewhere than glibc (musl, macOS) all of this is left alone."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from functools import cache
from pathlib import Path

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, opened once; None where it is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def cap_malloc_arenas(arenas: int) -> bool:
    """Let at most `arenas` malloc arenas be created from now on (0: glibc's default);
    whether it took effect."""
    libc = _glibc()
    return bool(arenas and libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def return_free_heap() -> bool:
    """Give the heap's free pages back to the system; whether any were."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


async def return_free_heap_every(seconds: float) -> None:
    """`return_free_heap` in a thread every `seconds`, until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(return_free_heap)


MADV_PAGEOUT = 21  # madvise's advice number in Linux's mman.h (Linux 5.4 and later)


def page_out_libraries(path_part: str) -> int:
    """Ask the kernel to reclaim the resident pages of the read-only file mappings (shared
    libraries' code and constants) whose path contains `path_part`; the bytes of the
    mappings advised (0 where madvise or MADV_PAGEOUT is not available). Pages used again
    come back on first touch, from the page cache or the file: clean file pages, nothing is
    lost. TensorFlow's start-up touches most of its 300-odd MiB of libraries (every kernel
    registers itself) though a loaded model's passes use a small part of them."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "madvise"):
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return 0
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or path_part not in fields[5]:
            continue  # anonymous, writable (private data) or another file
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
            advised += end - start
    return advised
