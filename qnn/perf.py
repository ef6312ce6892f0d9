"""Process-level performance switches for CPU training.

PyTorch's CPU tensors come from the C library's ``malloc``.  With glibc, every block above the
mmap threshold (128 KiB at start) is a fresh ``mmap`` that is unmapped again on ``free``; the
next allocation of that size pays one page fault per 4 KiB page when it is first written.  A
training step of a model with megabyte-sized weights (KACQ-DCNN's KAN layers: 5 MB per
weight-sized temporary) allocates and frees tens of megabytes, so on virtual machines, where
page faults are expensive, a large share of the step is spent in the kernel.  PyTorch's own CPU
tuning guide recommends an allocator that keeps freed memory (jemalloc / tcmalloc via
``LD_PRELOAD``); :func:`retain_freed_memory` gets most of that effect without a preload by
raising glibc's thresholds (``mallopt``) for the current process:

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum): blocks up to that size come from the heap;
* ``M_TRIM_THRESHOLD`` = 1 GiB: freed heap memory is kept for reuse instead of returned.

The cost is a higher resident set size (up to the peak of the workload, plus at most the trim
threshold).  It changes the whole process, so it is opt-in: nothing in qnn calls it implicitly.
The environment variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do the same
for a whole command.

Example:
    >>> from qnn.perf import retain_freed_memory
    >>> retain_freed_memory() in (True, False)   # False where the C library is not glibc
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring).

    Args:
        mmap_threshold: bytes; allocations below it come from the heap (glibc caps it at 32 MiB
            on 64-bit systems).
        trim_threshold: bytes of free memory at the top of the heap kept before returning any.

    Returns:
        True if both settings were applied; False on other C libraries / platforms (no effect).
    """
    for name, v in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**31:
            raise ValueError(f"retain_freed_memory: {name} must be an int in (0, 2**31); got {v!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok = (mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1) and ok
    return ok
