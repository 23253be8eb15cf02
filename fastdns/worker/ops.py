"""The worker's side of metrics, ``loadbalance`` and ``log`` (hooked from worker.main).

:func:`prepare` runs on every (re)configuration, before ``Engine.configure``:
it attaches the worker's counter row of the coordinator's segment once
(``config["stats"]``) and installs the query log sink.  :func:`replied` accounts for an answer
written in Python (a miss): metrics and log.

For the forwarder: ``worker.counters`` is this worker's row (a uint64
memoryview) or None; an upstream's counters start at
``fastdns.stats.forward_offset(u)`` (``u``: index in
``fastdns.metrics.forward_upstreams(plan)``), offsets ``F_*`` of
``fastdns._loop.counter_layout()``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastdns.config.plan import Plan
from fastdns.worker.querylog import QueryLog

log = logging.getLogger("fastdns.worker.ops")

__all__ = ["prepare", "replied"]


def prepare(worker: Any, plan: Plan, econf: dict[str, Any], config: dict[str, Any]) -> None:
    """Counter row and query log for ``plan`` (call before configure; the engine's
    flags come from the plugins' runtime entries, in ``econf``)."""
    name = config.get("stats")
    if name and getattr(worker, "counters", None) is None:
        from fastdns.stats import CounterSegment
        from fastdns.worker.fwdstats import reset_waiting

        try:
            seg = CounterSegment.attach(name)
            row = seg.row(worker.index)
            reset_waiting(row)
            worker.engine.attach_counters(row)
            worker.engine.attach_counter_rows(seg.all_rows(), seg.rows)
            worker.counters, worker._stats_segment = row, seg
        except Exception as exc:  # noqa: BLE001 - counting is not worth refusing to serve
            log.warning("worker %d: no shared counters: %s", worker.index, exc)
    qlog = QueryLog(plan)
    if qlog.enabled:
        qlog.set_listeners(econf["listeners"])
        old = getattr(worker, "querylog", None)
        if old is not None:
            old.drain()
        worker.querylog = qlog
        worker.engine.set_log_sink(qlog.sink)
    else:
        worker.querylog = None
        worker.engine.set_log_sink(None)


def drain(worker: Any) -> None:
    """Write pending query-log lines (called from the worker loop)."""
    qlog = getattr(worker, "querylog", None)
    if qlog is not None and qlog.sink:
        qlog.drain()


def replied(worker: Any, li: int, packet: bytes, data: bytes, addr: Any, t0: float,
            tcp: bool = False, src: int = 0) -> None:
    """An answer Python wrote for ``packet`` (``src``: the metrics source id of the
    plugin that wrote it, 0 the server): count it, log it."""
    seconds = time.monotonic() - t0
    v6 = bool(addr) and ":" in str(addr[0])
    worker.engine.count_reply(li, packet, data, seconds, tcp, v6, src)
    qlog = getattr(worker, "querylog", None)
    if qlog is not None:
        qlog.sink.append((li, packet, data, addr, seconds, tcp))
