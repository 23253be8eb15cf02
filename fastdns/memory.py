"""Give freed heap memory back to the system in long-lived processes.

Re-reading a large cluster snapshot builds a new index and drops the old
one; a worker unpacks a snapshot tens of MB large once.  Two glibc habits
would keep those pages resident for the life of the process:

* the *dynamic* mmap threshold: once a large block is freed, glibc raises
  the threshold to its size (up to 32 MiB), so the next 11 MB file read is
  carved from the heap instead of its own mapping and stays there after it
  is freed;
* a thread's own malloc arena (the snapshot poller, the watch threads) is
  never shrunk from its top by ``malloc_trim``, only on ``free`` past the
  trim threshold, which glibc raises along with the mmap threshold.

:func:`configure` fixes both thresholds (setting them turns the dynamic
adjustment off), so large buffers always get their own mapping and heap tops
are trimmed as they are freed; :func:`trim` returns the free pages inside the
heaps after a large update.  Both are no-ops without glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = ["configure", "trim"]

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024          # glibc's default before it starts adjusting
TRIM_THRESHOLD = 1024 * 1024

_trim = _mallopt = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _mallopt = _libc.mallopt
    _mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
except (OSError, AttributeError):  # pragma: no cover - not glibc
    pass


def configure() -> None:
    """Fix glibc's mmap and trim thresholds for this process (call it early)."""
    if _mallopt is not None:
        _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def trim() -> None:
    """Collect garbage, then hand free heap pages back."""
    gc.collect()
    if _trim is not None:
        _trim(0)
