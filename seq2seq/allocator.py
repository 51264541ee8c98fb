"""Keep large freed memory blocks for reuse: glibc's default gives them back to the kernel on every free.

glibc serves each block of 32 MB or more with a fresh mmap and unmaps it when it is freed. The biggest
tensors here are made once per step at just that size: a training batch's logits (1,000 target tokens ×
8,000 words × 4 bytes) and their gradient, and beam search's log-probabilities (250 sentences × 5 beams ×
8,000 words). Each such block then page-faults in again, 4 KB at a time, on every step. On a 2-core CPU
that made the output layer and its log-softmax markedly slower at beam search's shape (BENCHMARKS.md,
`python -m bench.micro`).
Raising glibc's mmap and trim thresholds keeps those blocks in the heap.

The cost: freed memory stays with the process for reuse instead of going back to the system, and the
heap holds a few spare blocks of that size (the peak-memory cost is in BENCHMARKS.md).
"""
from __future__ import annotations

import ctypes
import os
import platform

KEEP_BLOCKS_UP_TO = 1 << 30  # bytes; larger blocks still come from the kernel and go back to it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
_applied = False


def keep_large_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True where they are (now) raised.

    A no-op that returns False where the C library is not glibc, or where the user chose glibc's
    settings through its own environment variables (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_).
    """
    global _applied
    if _applied:
        return True
    if (platform.libc_ver()[0] != "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ
            or "MALLOC_TRIM_THRESHOLD_" in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # trim first: a raised mmap threshold with the default trim threshold would still hand the heap's top back
    _applied = (bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BLOCKS_UP_TO))
                and bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BLOCKS_UP_TO)))
    return _applied
