"""One-call entry: the ``kubernetes`` block's answers, from a snapshot or the live API."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastdns.plugins.kubernetes.compile import Answers, Delta, ZoneCompiler
from fastdns.compiled import AnswersView
from fastdns.plugins.kubernetes.objects import Compactor
from fastdns.plugins.kubernetes.source import OnDelta, SnapshotSource, WatchSource
from fastdns.records import Answer

__all__ = ["KubernetesPlugin", "table_source"]

log = logging.getLogger("fastdns.plugin.kubernetes")


class KubernetesPlugin:
    """Keeps the compiled answers of one ``kubernetes`` block current.

    With ``snapshot FILE`` the file is read at :meth:`start` (a broken file
    raises :class:`~fastdns.errors.SnapshotError`) and polled every
    ``poll_interval`` seconds; otherwise the API is listed and watched
    (:class:`WatchSource`).  ``on_delta`` receives every change as one
    :class:`Delta` (the first one has ``full=True`` and stands for the whole
    state); until :attr:`synced`, callers answer names in the zones SERVFAIL.
    :attr:`lock` serialises the compiler: hold it to read
    ``compiler.entries`` from another thread.
    """

    def __init__(self, conf: Any, on_delta: OnDelta, *, ns_addresses: tuple[str, ...] = (),
                 poll_interval: float = 1.0, **watch_kw: Any) -> None:
        self.conf = conf
        self.on_delta = on_delta
        self.compiler = ZoneCompiler(conf, ns_addresses=ns_addresses)
        self.poll_interval = poll_interval
        self.zones: tuple[str, ...] = tuple(z if z.endswith(".") else z + "."
                                            for z in conf.zones)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.snapshot: SnapshotSource | None = None
        self.watch: WatchSource | None = None
        if conf.snapshot:
            self.snapshot = SnapshotSource(conf.snapshot, getattr(conf, "labels", None),
                                           Compactor.for_conf(conf),
                                           getattr(conf, "namespace_labels", None))
        else:
            self.watch = WatchSource(conf, self._deliver, compiler=self.compiler, **watch_kw)

    @property
    def synced(self) -> bool:
        """Whether a complete state has been compiled."""
        if self.watch is not None:
            return self.watch.synced
        return self.snapshot is not None and self.snapshot.index is not None

    @property
    def lock(self) -> threading.Lock:
        """The lock held while the compiler changes (and while ``on_delta`` runs)."""
        return self.watch._lock if self.watch is not None else self._lock

    def _deliver(self, delta: Delta) -> None:
        self.on_delta(delta)

    def start(self) -> None:
        """Load/sync in the background (snapshot: load now, then poll)."""
        if self.watch is not None:
            self.watch.start()
            return
        assert self.snapshot is not None
        index = self.snapshot.load()
        with self._lock:
            self.compiler.full(index)
            self.on_delta(self.compiler.full_delta())
        self._thread = threading.Thread(target=self._poll_loop, daemon=True,
                                        name="k8s-snapshot-poll")
        self._thread.start()

    def poll_now(self) -> bool:
        """Re-read the snapshot if it changed; True if a Delta was delivered."""
        assert self.snapshot is not None
        # only this thread changes the compiler's index in snapshot mode: read it unlocked
        events = self.snapshot.poll(self.compiler.index)
        if events is None:
            return False
        with self._lock:
            delta = self.compiler.apply_many(events)
            if delta:
                self.on_delta(delta)
        return bool(delta)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_now()
            except Exception:  # keep polling whatever happens; the error is logged
                log.exception("kubernetes snapshot poll failed")

    def stop(self) -> None:
        """Stop the watch threads or the poller."""
        self._stop.set()
        if self.watch is not None:
            self.watch.stop()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def answers(self) -> Answers:
        """A copy of the current compiled state (``name → {qtype → Answer}``, decoded
        on access)."""
        with self.lock:
            entries = dict(self.compiler.entries)
        return AnswersView(entries, self.compiler.encoder.negatives)  # type: ignore[return-value]

    def zone_answers(self) -> list[tuple[Answer, Answer]]:
        """``(nxdomain, nodata)`` of each zone the block serves (the table's negatives)."""
        comp = self.compiler
        return [(comp.nxdomain(z), comp.nodata(z)) for z in self.zones]


def table_source(ctx: Any) -> KubernetesPlugin:
    """The runtime's source of a ``kubernetes`` table stage (SourceContext → source)."""
    plugin = KubernetesPlugin(ctx.conf, ctx.on_delta, ns_addresses=ctx.ns_addresses,
                              poll_interval=ctx.poll_interval)
    plugin.zones = ctx.zones
    return plugin
