"""The coordinator-side source of a ``k8s_external`` table stage.

It does not read the cluster itself: it *follows* its server block's ``kubernetes``
source (:func:`fastdns.plugins.kubernetes.plugin.follow`), which hands it the same
objects its own watch or snapshot reads: the whole state once synced
(``feed_reset``), then every change (``feed_events``).  Those calls come from the
kubernetes source's thread under its lock, so they only queue the work; this
source's thread compiles (:class:`~.compile.ExternalCompiler`) and hands each
change to the coordinator as one Delta.  Until the first state arrives its zones
answer SERVFAIL, as the kubernetes zones do until synced.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from fastdns.plugins.k8s_external.compile import ExternalCompiler
from fastdns.records import Answer

__all__ = ["ExternalSource"]

log = logging.getLogger("fastdns.plugin.k8s_external")

_STOP = object()


class ExternalSource:
    """One ``k8s_external`` stage's answers, kept current (see the module doc)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.conf = ctx.conf
        self.zones = ctx.zones
        self.on_delta = ctx.on_delta
        kconf = ctx.server.plugin("kubernetes")
        self.compiler = ExternalCompiler(ctx.conf, ctx.zones, kconf,
                                         ns_addresses=ctx.ns_addresses)
        self.lock = threading.Lock()
        self.synced = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def zone_answers(self) -> list[tuple[Answer, Answer]]:
        """``(nxdomain, nodata)`` per zone: the SOA of ``ns1.<apex>`` in each."""
        return self.compiler.zone_answers()

    # -- from the kubernetes source (its thread, its lock held): queue only --------
    def feed_reset(self, objects: list[Any]) -> None:
        self._queue.put(("reset", objects))

    def feed_events(self, events: list[Any]) -> None:
        self._queue.put(("events", events))

    def feed_lost(self) -> None:
        log.warning("k8s_external: the block's kubernetes source stopped; "
                    "keeping the last answers")

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start compiling; follow the block's kubernetes source."""
        from fastdns.plugins.kubernetes.plugin import follow

        self._thread = threading.Thread(target=self._run, daemon=True, name="k8s-external")
        self._thread.start()
        follow(self.ctx.server, self)

    def stop(self) -> None:
        """Stop following and compiling."""
        from fastdns.plugins.kubernetes.plugin import unfollow

        unfollow(self.ctx.server, self)
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:                      # everything queued so far: one Delta
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(it is _STOP for it in items):
                return
            try:
                self._apply(items)
            except Exception:  # keep following whatever happens; the error is logged
                log.exception("k8s_external: compiling a change failed")

    def _apply(self, items: list[tuple[str, Any]]) -> None:
        comp = self.compiler
        with self.lock:
            if not self.synced:
                at = max((i for i, (what, _) in enumerate(items) if what == "reset"), default=-1)
                if at < 0:
                    return                   # changes before the first state: not possible
                comp.full(items[at][1])
                rest = items[at + 1:]
                for what, payload in rest:
                    if what == "reset":
                        comp.replace(payload)
                    else:
                        comp.apply_many(payload)
                self.synced = True
                log.info("k8s_external %s: %d names", " ".join(self.zones), len(comp.store))
                self.on_delta(comp_full(comp))
                return
            upserts: dict[bytes, bytes] = {}
            deletes: set[bytes] = set()
            for what, payload in items:
                d = comp.replace(payload) if what == "reset" else comp.apply_many(payload)
                for k in d.removed:
                    upserts.pop(k, None)
                    deletes.add(k)
                for k, e in d.entries.items():
                    upserts[k] = e
                    deletes.discard(k)
            if upserts or deletes:
                from fastdns.compiled import Delta

                self.on_delta(Delta(upserts, frozenset(deletes), comp.encoder))


def comp_full(comp: ExternalCompiler) -> Any:
    """The Delta standing for the whole compiled state."""
    from fastdns.compiled import Delta

    return Delta(comp.store, frozenset(), comp.encoder, True)
