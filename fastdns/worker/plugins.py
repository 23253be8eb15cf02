"""Python plugins of a worker: ``forward`` (+ ``cache`` fill), ``loop`` and ``errors``.

:func:`attach` is called by the worker after every (re)configuration, with
the worker's fresh :class:`~fastdns.worker.miss.MissHandler` in place.  It
registers one resolver per block and sets the worker's hooks
(``extra_fds``, ``on_fd``, ``on_timer``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastdns.config.plan import Plan
from fastdns.ipc import codec, schema
from fastdns.plugins.loop.detect import LoopDetector
from fastdns.worker.errorlog import ErrorLogs
from fastdns.worker.forwarder import BlockForwarder, Forwarder
from fastdns.worker.fwdstats import ForwardCounters

__all__ = ["attach"]

log = logging.getLogger("fastdns.worker.plugins")


class _Hooks:
    def __init__(self, fwd: Forwarder, loops: list[LoopDetector], errors: ErrorLogs) -> None:
        self.fwd = fwd
        self.loops = loops
        self.errors = errors

    def fds(self) -> list[int]:
        out = self.fwd.fds()
        for d in self.loops:
            out.extend(d.fds())
        return out

    def on_fd(self, fd: int, events: int) -> None:
        for d in self.loops:
            if d.on_fd(fd):
                return
        self.fwd.on_fd(fd, events)

    def on_timer(self) -> None:
        self.fwd.on_timer()
        for d in self.loops:
            d.on_timer()
        if self.errors.enabled:
            self.errors.tick()


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
    if old is not None:
        old.close()
    old_errors = getattr(worker, "_errorlogs", None)
    if old_errors is not None:
        old_errors.close()                  # pending consolidated summaries
    errors = ErrorLogs(plan)
    worker._errorlogs = errors
    fwd = Forwarder(worker.cache, worker.sync.health)
    row = getattr(worker, "counters", None)
    if row is not None and plan.confs("prometheus"):
        fwd.counters = ForwardCounters(row)
    slot = 0                                # fastdns.metrics.forward_upstreams order
    if errors.enabled:
        fwd.on_error = errors.report
        worker.miss.on_error = errors.report
    loops: list[LoopDetector] = []

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
            worker.miss.add_resolver(bi, BlockForwarder(fwd, bi, confs, server.plugin("cache"),
                                                        slot0=slot))
            slot += sum(len(c.to) for c in confs)
    worker._forwarder = fwd
    hooks = _Hooks(fwd, loops, errors)
    worker.extra_fds = hooks.fds
    worker.on_fd = hooks.on_fd
    worker.on_timer = hooks.on_timer
