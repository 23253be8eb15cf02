"""The shared-memory counter segment: one row of counters per worker slot.

The coordinator creates the segment (a POSIX shared-memory object, through
``_posixshmem`` + ``mmap``: no resource tracker that would unlink it when a
worker exits); each worker attaches it and hands its row to
``fastdns._loop.Engine.attach_counters``, so queries are counted in C with
no IPC.  ``/metrics`` sums the rows (:mod:`fastdns.metrics`).

A row belongs to a worker *slot*, not a process: a restarted worker attaches
the same row and keeps adding, so totals never go backwards.  The last row is
the coordinator's own (what it counts itself, e.g. upstream health checks).

Layout: a 64-byte header (magic, version, rows, counters per row), then
``rows × ncounters`` native-endian uint64.  Row ``i`` is at
``64 + i * ncounters * 8``.  The meaning of each counter is in
``fastdns/_includes/opsstats.pxd`` (``fastdns._loop.counter_layout()``).
"""

from __future__ import annotations

import _posixshmem
import mmap
import os
import struct

from fastdns.errors import FastDNSError

__all__ = ["CounterSegment", "forward_offset", "ncounters"]

MAGIC = 0x46444E5353544154          # "FDNSSTAT"
VERSION = 1
HEADER = struct.Struct("=QIII")      # magic, version, rows, ncounters
HEADER_SIZE = 64


def ncounters() -> int:
    """Counters per row, as the engine was compiled."""
    from fastdns._loop import counter_layout

    return int(counter_layout()["NCOUNTERS"])


class CounterSegment:
    """A mapped counter segment (the creator unlinks it)."""

    def __init__(self, name: str, mm: mmap.mmap, rows: int, ncount: int, owner: bool) -> None:
        self.name = name
        self._mm = mm
        self.rows = rows
        self.ncounters = ncount
        self.owner = owner
        self._all = memoryview(mm)[HEADER_SIZE:].cast("Q")

    @classmethod
    def create(cls, name: str, rows: int) -> CounterSegment:
        """A new zeroed segment of ``rows`` worker rows plus the coordinator's."""
        n = ncounters()
        total = rows + 1
        size = HEADER_SIZE + total * n * 8
        try:
            _posixshmem.shm_unlink(name)
        except FileNotFoundError:
            pass
        fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        mm[:HEADER.size] = HEADER.pack(MAGIC, VERSION, total, n)
        return cls(name, mm, total, n, owner=True)

    @classmethod
    def attach(cls, name: str) -> CounterSegment:
        """Map an existing segment, checking it was made for this engine build."""
        try:
            fd = _posixshmem.shm_open(name, os.O_RDWR, mode=0)
        except OSError as exc:
            raise FastDNSError(f"counter segment {name}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        magic, version, rows, n = HEADER.unpack(mm[:HEADER.size])
        if magic != MAGIC or version != VERSION or n != ncounters() \
                or size < HEADER_SIZE + rows * n * 8:
            mm.close()
            raise FastDNSError(f"counter segment {name}: not a fastdns v{VERSION} segment "
                               f"of {ncounters()} counters per row")
        return cls(name, mm, rows, n, owner=False)

    @property
    def coordinator_row_index(self) -> int:
        return self.rows - 1

    def row(self, i: int) -> memoryview:
        """Row ``i`` as a writable uint64 memoryview (``Engine.attach_counters`` takes it)."""
        if not 0 <= i < self.rows:
            raise IndexError(f"counter row {i}: the segment has {self.rows}")
        return self._all[i * self.ncounters:(i + 1) * self.ncounters]

    def all_rows(self) -> memoryview:
        """Every row, one after the other (``Engine.attach_counter_rows`` takes it)."""
        return self._all[:self.rows * self.ncounters]

    def sum_range(self, start: int, stop: int) -> list[int]:
        """Counters ``start:stop`` summed over every row."""
        out = [0] * (stop - start)
        n = self.ncounters
        for r in range(self.rows):
            base = r * n
            chunk = self._all[base + start:base + stop].tolist()
            if any(chunk):
                out = [a + b for a, b in zip(out, chunk)]
        return out

    def close(self) -> None:
        try:
            self._all.release()
            self._mm.close()
        except (BufferError, ValueError):   # a row is still attached somewhere in this process
            pass

    def unlink(self) -> None:
        try:
            _posixshmem.shm_unlink(self.name)
        except FileNotFoundError:
            pass


def forward_offset(upstream: int) -> int:
    """Where upstream ``upstream``'s counters start in a row (add ``F_*`` offsets)."""
    from fastdns._loop import counter_layout

    lay = counter_layout()
    if not 0 <= upstream < lay["FWD_UPSTREAMS"]:
        raise IndexError(f"forward upstream slot {upstream}: 0..{lay['FWD_UPSTREAMS'] - 1}")
    return int(lay["FWD"] * lay["SECT"] + upstream * lay["F_STRIDE"])
