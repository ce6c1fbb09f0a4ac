"""Handing freed memory back to the operating system between the steps of a long CPU job.

glibc's malloc keeps memory that tensors freed for reuse, and its adaptive threshold soon
serves even multi-megabyte buffers from its heaps instead of fresh mappings. A loop whose
steps allocate many buffers of varying sizes (the evaluation: a network, four references
and their metrics at ten hint counts per batch) then fragments those heaps faster than it
reuses them: measured here, ``src/eval.py`` on the ImageNet sample grew by ~75 MB per image
and was killed by the kernel at 24 GB after 312 of 490 photos. ``malloc_trim`` after each
step returns the free pages, which keeps the process at its working size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, another system)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # no such symbol outside glibc (musl, macOS)
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; True where that was possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
