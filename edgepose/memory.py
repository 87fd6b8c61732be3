"""Keep freed frame-sized buffers in the process (glibc), so each frame does not page-fault anew.

Why: every frame allocates a few MB that it frees at once: the decoded image, the letterboxed
tensor, the head output. glibc serves blocks that large with a fresh ``mmap``, or gives a freed
heap top back to the kernel, so the next frame touches new pages: measured here, about 1,300 page
faults per decoded 1280x720 JPEG, 2.5-3 ms on top of libjpeg's own 1.7-2.3 ms, and the same again
for the float tensor. With the thresholds raised, those blocks stay in the heap and are reused.
The price is that memory freed after a peak is kept for reuse rather than returned.

The CLI calls ``reuse_freed_memory()`` for its own process; an application embedding the runtime
may call it once at start (it changes the allocator for the whole process, so edgepose never does
that on import). Where the user already tuned glibc through the environment, nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # the ceiling glibc's own dynamic threshold may reach
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # glibc's own ratio between the two
USER_TUNING = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_kept = False  # whether reuse_freed_memory() raised the thresholds in this process


def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; returns whether they are raised.
    A no-op (False) off glibc (macOS, Windows, musl) and where the environment already tunes malloc."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_TUNING):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    ):
        return False
    _kept = True
    return True


def allocator_state() -> str:
    """For reports: whether this process keeps freed buffers (see ``reuse_freed_memory``)."""
    if _kept:
        return f"glibc, freed blocks kept for reuse (mmap threshold {MMAP_THRESHOLD >> 20} MB)"
    tuned = [name for name in USER_TUNING if name in os.environ]
    return f"tuned by the environment ({', '.join(tuned)})" if tuned else "default"
