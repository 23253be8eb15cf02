"""Give freed heap memory back to the system after large updates.

Re-reading a large cluster snapshot builds a new index and drops the old
one; glibc keeps the freed pages in its arenas, so the coordinator's RSS
would ratchet up with every change.  ``malloc_trim(0)`` returns them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_libc = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _trim = None


def trim() -> None:
    """Collect garbage, then hand free heap pages back (no-op without glibc)."""
    gc.collect()
    if _trim is not None:
        _trim(0)
