"""Keeps freed memory in the process instead of handing it back to the kernel after each batch.

glibc's malloc serves a block larger than its mmap threshold (128 KiB, rising with the blocks
freed, at most 32 MiB) with a fresh mapping of its own, unmapped again when freed, and gives the
top of the heap back once more than twice that threshold lies free there. metaviz's batches
make blocks of 10-100 MiB (a forward pass over 600 28x28 images: 30 MiB per layer; meta-batch 32's
query images through the patch matrices: 40-90 MiB), so each batch's memory went back to the
kernel and was mapped and zeroed again, page by page, by the next one: a fifth of
meta-training's CPU time was the kernel's, and a 600-image forward pass took about twice as long
as on reused memory (benchmarks/README.md, "Freed memory kept"). Here large blocks come from the
heap like small ones and stay there, free, for the next batch. The cost is memory held after a
peak: up to TRIM_THRESHOLD free at the top of the heap, and what lies free below it.

Called by the entry points (app.py, `python -m metaviz`), never on import: it changes the whole
process. Elsewhere than glibc it does nothing; with METAVIZ_KEEP_FREED_MEMORY=0 in the
environment neither (benchmarks/allocator.py measures the difference that way).
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 256 * 2**20


def keep_freed_memory() -> bool:
    """Large blocks from the heap, and the heap trimmed only past TRIM_THRESHOLD (see the
    module's docstring); False where the C library has no mallopt or refuses the settings, or
    METAVIZ_KEEP_FREED_MEMORY is 0."""
    if os.environ.get("METAVIZ_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # No block gets a mapping of its own (glibc still maps memory for a heap that cannot grow in
    # place). mallopt answers 1 on success, 0 on failure.
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
