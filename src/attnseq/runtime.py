"""Process-wide settings that the `attnseq` command applies before it works.

`keep_freed_memory`: a decoding step allocates several vocabulary-wide temporaries (logits,
log-probabilities: 12.5 MB each for 320 beam rows over a 9,762-word vocabulary). glibc's malloc
serves blocks that large with fresh memory maps by default and hands them back to the system on
free (or trims them off its heap), so every step pays page faults and the kernel zeroing each page
again. Telling malloc to keep freed memory for reuse removes that cost: beam-5 decoding ran about
25% faster on the 2-core bench machine (README, performance). Memory the process once used stays
with it until it exits, as with PyTorch's GPU caching allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 1 << 30  # bytes: blocks below this come from the heap, and the heap is trimmed only above it


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning it to the system (see the module
    docstring). Returns whether the setting took; on a C library without `mallopt` (macOS, musl)
    nothing changes. Applies to the whole process, once."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
