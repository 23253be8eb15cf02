"""The forwarder's counters in the worker's row of the shared counter segment.

Upstream ``u`` (its index in :func:`fastdns.metrics.forward_upstreams`) counts at
:func:`fastdns.stats.forward_offset` ``(u)`` + the ``F_*`` offsets of
``fastdns._loop.counter_layout()``: queries sent (``F_REQ``), responses by rcode
(``F_RCODE``), queries that timed out (``F_TIMEOUT``) and the duration histogram
(``F_DUR`` buckets of ``fastdns.metrics.TIME_BUCKETS``, ``F_DUR_SUM`` in ns).
``/metrics`` turns them into ``coredns_forward_*`` (:mod:`fastdns.metrics`).

A directive's first upstream also holds ``F_WAITING``, a gauge of the clients
waiting on the directive in this worker (C and Python forwarders together), and
``F_MC_REJECT``, the queries refused for ``max_concurrent``: the limit compares
the gauges summed over every worker's row (:class:`SharedWaiting`), so it is one
limit per directive, as CoreDNS's is per server.
"""

from __future__ import annotations

from typing import Any

from fastdns._loop import counter_layout
from fastdns.stats import forward_offset

__all__ = ["ForwardCounters", "SharedWaiting", "duration_bucket", "reset_waiting"]

_L = counter_layout()
F_REQ, F_RCODE, F_TIMEOUT = _L["F_REQ"], _L["F_RCODE"], _L["F_TIMEOUT"]
F_DUR, F_DUR_SUM, NDUR = _L["F_DUR"], _L["F_DUR_SUM"], _L["NDUR"]
F_WAITING, F_MC_REJECT = _L["F_WAITING"], _L["F_MC_REJECT"]


def duration_bucket(ns: int) -> int:
    """The bucket of ``ns`` nanoseconds (as ``st_dur_bucket`` in _includes/opsstats.pxd)."""
    bound = 250_000
    for k in range(NDUR - 1):
        if ns <= bound:
            return k
        bound <<= 1
    return NDUR - 1


class ForwardCounters:
    """Counting for one worker: ``row`` is its uint64 memoryview row."""

    def __init__(self, row: Any) -> None:
        self.row = row

    @staticmethod
    def base(slot: int) -> int:
        """Where upstream ``slot``'s counters start; -1 when it has no slot (past 16)."""
        try:
            return forward_offset(slot)
        except IndexError:
            return -1

    def request(self, base: int) -> None:
        if base >= 0:
            self.row[base + F_REQ] += 1

    def response(self, base: int, rcode: int, seconds: float) -> None:
        if base < 0:
            return
        ns = max(0, int(seconds * 1e9))
        row = self.row
        row[base + F_RCODE + (rcode & 15)] += 1
        row[base + F_DUR + duration_bucket(ns)] += 1
        row[base + F_DUR_SUM] += ns

    def timeout(self, base: int) -> None:
        if base >= 0:
            self.row[base + F_TIMEOUT] += 1


class SharedWaiting:
    """The F_WAITING gauges of every worker: ``all_rows`` is the segment's rows one
    after the other (``rows`` of ``ncounters``), ``row`` this worker's."""

    def __init__(self, all_rows: Any, rows: int, ncounters: int, row: Any) -> None:
        self.all = all_rows
        self.rows = rows
        self.n = ncounters
        self.row = row

    def total(self, off: int) -> int:
        """Clients waiting on the directive whose gauge is at ``off``, in every worker."""
        a, n = self.all, self.n
        return sum(a[r * n + off] for r in range(self.rows))

    def add(self, off: int, k: int) -> None:
        self.row[off] += k

    def rejected(self, off: int) -> None:
        self.row[off - F_WAITING + F_MC_REJECT] += 1


def reset_waiting(row: Any) -> None:
    """Zero this row's F_WAITING gauges: a worker starting in a slot whose previous
    process died leaves none of its waiting clients counted."""
    for u in range(_L["FWD_UPSTREAMS"]):
        row[forward_offset(u) + F_WAITING] = 0
