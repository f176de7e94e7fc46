"""Keep freed memory for reuse while decoding (glibc's malloc), as CTranslate2's caching allocator does.

A decoding step allocates tensors of several megabytes (beam 4 × 64 sentences × 8,000 logits: 8 MB) and frees
them before the next step. glibc serves blocks above its mmap threshold with fresh ``mmap`` pages that are
returned to the OS on ``free``, so every step pays the page faults of touching new memory again, measured
here as 8–12 % of a beam search (Xeon, 2 threads, ``small`` model). ``keep_freed_memory`` raises the mmap
threshold to glibc's maximum (32 MiB on 64-bit) and keeps freed memory at the top of the heap, so the next
step's tensors land in pages already mapped. Blocks above 32 MiB would still be mapped afresh — a beam of 4 over
64 sentences and opus-mt's 65,001 tokens makes 66 MB of logits, then as much again for their log-softmax, at
every step (AVX2, one thread: ``x + 1`` on such a block 51 → 7 ms, log-softmax 67 → 24 ms) — so it also turns
``mmap`` off for the heap (``M_MMAP_MAX`` = 0): every block comes from the heap and is reused when freed.
The price: the process keeps up to ``trim_mb`` of freed memory at the heap's top, and freed blocks below it.
It changes the whole process's allocator, so ``rosetta.load`` calls it (a process that decodes) and a
library user can opt out with ``ROSETTA_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems


@functools.cache
def keep_freed_memory(trim_mb: int = 512) -> bool:
    """Ask glibc's malloc to reuse freed blocks of any size instead of unmapping them (see the module
    docstring); True when applied, False where there is no glibc or ``ROSETTA_KEEP_FREED_MEMORY=0``."""
    if os.environ.get("ROSETTA_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return (bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, trim_mb * 2**20))
            and bool(mallopt(M_MMAP_MAX, 0)))
