"""Python plugins of a worker: ``forward`` (+ ``cache`` fill), ``loop`` and ``errors``.

:func:`attach` is called by the worker after every (re)configuration, with
the worker's fresh :class:`~fastdns.worker.miss.MissHandler` in place.  It
registers one resolver per block and sets the worker's hooks
(``extra_fds``, ``on_fd``, ``on_timer``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastdns.config.plan import Plan
from fastdns.ipc import codec, schema
from fastdns.plugins.loop.detect import LoopDetector
from fastdns.worker import cforward
from fastdns.worker.errorlog import ErrorLogs
from fastdns.worker.forwarder import BlockForwarder, Forwarder
from fastdns.worker.fwdstats import ForwardCounters, SharedWaiting

__all__ = ["attach"]

log = logging.getLogger("fastdns.worker.plugins")


#: How long a forwarder replaced by a reload keeps serving the queries it has in
#: flight (their own timeouts normally end them sooner).
DRAIN_SECONDS = 10.0


class _Draining:
    """A forwarder of an earlier configuration finishing its queries in flight, with
    the error log its failures still go to."""

    __slots__ = ("deadline", "errors", "fwd")

    def __init__(self, fwd: Forwarder, deadline: float, errors: ErrorLogs | None) -> None:
        self.fwd = fwd
        self.deadline = deadline
        self.errors = errors

    def tick(self, now: float) -> bool:
        """Timers and error summaries; True once done (then closed)."""
        self.fwd.on_timer()
        if self.errors is not None and self.errors.enabled:
            self.errors.tick()
        if not (self.fwd.idle or now >= self.deadline):
            return False
        self.fwd.close()
        if self.errors is not None:
            self.errors.close()
        return True


class _Hooks:
    """The worker loop's fds/timers of the current forwarder and loop detectors, plus
    the forwarders of earlier configurations still answering their queries in flight."""

    def __init__(self, fwd: Forwarder, loops: list[LoopDetector], errors: ErrorLogs,
                 draining: list[_Draining]) -> None:
        self.fwd = fwd
        self.loops = loops
        self.errors = errors
        self.draining = draining

    def fds(self) -> list[int]:
        out = self.fwd.fds()
        for d in self.loops:
            out.extend(d.fds())
        for d in self.draining:
            out.extend(d.fwd.fds())
        return out

    def on_fd(self, fd: int, events: int) -> None:
        for d in self.loops:
            if d.on_fd(fd):
                return
        for d in self.draining:
            if d.fwd.owns(fd):
                d.fwd.on_fd(fd, events)
                return
        self.fwd.on_fd(fd, events)

    def on_timer(self) -> None:
        self.fwd.on_timer()
        for d in self.loops:
            d.on_timer()
        if self.errors.enabled:
            self.errors.tick()
        if self.draining:
            now = time.monotonic()
            self.draining[:] = [d for d in self.draining if not d.tick(now)]


def _listener_target(plan: Plan, bi: int) -> tuple[str, int] | None:
    server = plan.servers[bi]
    for li in plan.listeners:
        if any(i == bi for _, i in li.zones):
            host = li.address or "127.0.0.1"
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if host == "0.0.0.0" else "::1"
            return host, server.port
    return None


def attach(worker: Any, plan: Plan) -> None:
    """Register forward/loop resolvers for ``plan`` on ``worker`` (replacing old ones)."""
    old = getattr(worker, "_forwarder", None)
    old_errors = getattr(worker, "_errorlogs", None)
    draining: list[_Draining] = list(getattr(worker, "_draining", []))
    if old is not None and not old.idle:    # its queries in flight still get their answers
        draining.append(_Draining(old, time.monotonic() + DRAIN_SECONDS, old_errors))
    else:
        if old is not None:
            old.close()
        if old_errors is not None:
            old_errors.close()              # pending consolidated summaries
    errors = ErrorLogs(plan)
    worker._errorlogs = errors
    fwd = Forwarder(worker.cache, worker.sync.health)
    row = getattr(worker, "counters", None)
    if row is not None and plan.confs("prometheus"):
        fwd.counters = ForwardCounters(row)
    seg = getattr(worker, "_stats_segment", None)
    if row is not None and seg is not None:
        fwd.shared = SharedWaiting(seg.all_rows(), seg.rows, seg.ncounters, row)
    slot = 0                                # fastdns.metrics.forward_upstreams order
    if errors.enabled:
        fwd.on_error = errors.report
        worker.miss.on_error = errors.report
    loops: list[LoopDetector] = []
    worker._cforward = {}

    def on_loop(msg: str) -> None:
        worker.dealer.send(codec.pack({"k": schema.FATAL, "worker": worker.index, "error": msg}))

    for bi, server in enumerate(plan.servers):
        loop_conf = server.plugin("loop")
        if loop_conf is not None and server.plugin("forward") is not None:
            target = _listener_target(plan, bi)
            if target is not None:
                d = LoopDetector(loop_conf.zone, target, on_loop,
                                 send=worker.index == 0)
                loops.append(d)
                worker.miss.add_resolver(bi, d)
        confs = server.plugins_named("forward")
        if confs:
            bf = BlockForwarder(fwd, bi, confs, server.plugin("cache"), slot0=slot)
            bf.cache_ns = worker._econf["blocks"][bi].get("cache_ns", 0)
            worker.miss.add_resolver(bi, bf)
            # UDP clients' misses are forwarded in C where the block allows it; the
            # Python forwarder keeps the rest (TCP clients, force_tcp, DoT, TC retries)
            cforward.install(worker, bi, confs, server.plugin("cache"), slot,
                             counted=fwd.counters is not None, shared=fwd.shared is not None)
            slot += sum(len(c.to) for c in confs)
    worker._forwarder = fwd
    worker._draining = draining
    hooks = _Hooks(fwd, loops, errors, draining)
    worker.extra_fds = hooks.fds
    worker.on_fd = hooks.on_fd
    worker.on_timer = hooks.on_timer
