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

__all__ = ["KubernetesPlugin", "table_source", "block_key", "follow", "unfollow"]

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
        #: the server block this source serves (:func:`block_key`; set by table_source):
        #: followers of the block (k8s_external) receive its objects (:func:`follow`)
        self.block: tuple[Any, ...] | None = None
        self._taps: list[Any] = []
        if conf.snapshot:
            self.snapshot = SnapshotSource(conf.snapshot, getattr(conf, "labels", None),
                                           Compactor.for_conf(conf),
                                           getattr(conf, "namespace_labels", None))
        else:
            self.watch = WatchSource(conf, self._deliver, compiler=self.compiler, **watch_kw)
            self.watch.on_change = self._changed

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
            _register(self)
            return
        assert self.snapshot is not None
        index = self.snapshot.load()
        with self._lock:
            self.compiler.full(index)
            self.on_delta(self.compiler.full_delta())
        _register(self)
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
            if events:
                self._changed(events)
        return bool(delta)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_now()
            except Exception:  # keep polling whatever happens; the error is logged
                log.exception("kubernetes snapshot poll failed")

    def stop(self) -> None:
        """Stop the watch threads or the poller."""
        _unregister(self)
        self._stop.set()
        if self.watch is not None:
            self.watch.stop()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- followers: a second consumer of the same objects (k8s_external) ----------
    def _objects(self) -> list[Any]:
        """Every Namespace, Service and EndpointSlice of the index (hold the lock)."""
        idx = self.compiler.index
        return [*idx.namespaces.values(), *idx.services.values(), *idx.slices.values()]

    def _changed(self, events: list[Any] | None) -> None:
        """Under the lock, after a change was applied: hand it to every tap
        (``None``: the source just synced, every tap gets the whole state)."""
        if not self._taps:
            return
        if events is None:
            objs = self._objects()
            for sub in self._taps:
                sub.feed_reset(objs)
            return
        for sub in self._taps:
            sub.feed_events(events)

    def tap(self, sub: Any) -> None:
        """Send ``sub`` this source's objects: ``sub.feed_reset(objects)`` with the
        whole state once synced (now if it is), then ``sub.feed_events(events)``
        for every change, called under :attr:`lock` from the source's thread (so
        they must only queue the work)."""
        with self.lock:
            self._taps.append(sub)
            if self.synced:
                sub.feed_reset(self._objects())

    def untap(self, sub: Any) -> None:
        """Stop sending ``sub`` changes."""
        with self.lock:
            if sub in self._taps:
                self._taps.remove(sub)

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
    plugin.block = block_key(ctx.server)
    return plugin


# -- one watch, several consumers ----------------------------------------------------
#
# A plugin that reads the cluster of its block's ``kubernetes`` line (k8s_external)
# follows the block instead of watching the API (or reading the snapshot) again: the
# block's running KubernetesPlugin taps it.  Sources are started and stopped in any
# order (a reload starts the new ones before it stops the old), so the registry keeps,
# per block, every running KubernetesPlugin (the newest one feeds the followers) and
# every follower; a follower moves to the newest source as sources come and go, and
# gets its whole state again from it (feed_reset).

_registry_lock = threading.Lock()
_live: dict[tuple[Any, ...], list[KubernetesPlugin]] = {}
_followers: dict[tuple[Any, ...], list[Any]] = {}


def block_key(server: Any) -> tuple[Any, ...]:
    """What identifies a server block across reloads: transport, port, zones, bind."""
    return (server.transport, server.port, tuple(server.zones), tuple(server.bind))


def _register(plugin: KubernetesPlugin) -> None:
    if plugin.block is None:
        return
    with _registry_lock:
        live = _live.setdefault(plugin.block, [])
        old = live[-1] if live else None
        live.append(plugin)
        for sub in _followers.get(plugin.block, ()):
            if old is not None:
                old.untap(sub)
            plugin.tap(sub)


def _unregister(plugin: KubernetesPlugin) -> None:
    if plugin.block is None:
        return
    with _registry_lock:
        live = _live.get(plugin.block, [])
        if plugin not in live:
            return
        current = live[-1] is plugin
        live.remove(plugin)
        if not live:
            del _live[plugin.block]
        if not current:
            return
        for sub in _followers.get(plugin.block, ()):
            plugin.untap(sub)
            if live:
                live[-1].tap(sub)
            else:
                lost = getattr(sub, "feed_lost", None)
                if lost is not None:
                    lost()


def follow(server: Any, sub: Any) -> None:
    """Have ``sub`` receive the objects of ``server``'s ``kubernetes`` source
    (:meth:`KubernetesPlugin.tap`), now if it runs, else once it starts."""
    key = block_key(server)
    with _registry_lock:
        _followers.setdefault(key, []).append(sub)
        live = _live.get(key)
        if live:
            live[-1].tap(sub)


def unfollow(server: Any, sub: Any) -> None:
    """Stop ``sub`` following ``server``'s block."""
    key = block_key(server)
    with _registry_lock:
        subs = _followers.get(key, [])
        if sub in subs:
            subs.remove(sub)
        if not subs:
            _followers.pop(key, None)
        for p in _live.get(key, ()):
            p.untap(sub)
