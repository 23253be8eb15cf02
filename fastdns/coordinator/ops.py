"""Operating the coordinator like CoreDNS: probes, metrics, lameduck, reload.

:class:`Ops` is hooked into :class:`fastdns.coordinator.main.Coordinator` with a
few calls (``start``, ``tick``, ``worker_ready``, ``terminate``,
``request_reload``, ``close``) and owns:

* the shared counter segment (:mod:`fastdns.stats`; its name goes to the
  workers in the snapshot's ``config["stats"]``),
* the HTTP endpoints (:mod:`fastdns.coordinator.http`) and the metrics
  registry (:mod:`fastdns.metrics`),
* readiness: every worker slot has a live process that reported READY for the
  current configuration generation, and every Kubernetes source has synced,
* lameduck: :meth:`terminate` (SIGTERM) keeps serving for ``health``'s
  ``lameduck`` duration (``/health`` 200, ``/ready`` 503), then stops; a
  second SIGTERM stops at once,
* reload (:mod:`fastdns.coordinator.reload`): a broken Corefile is logged and
  counted (``coredns_reload_failed_total``) and changes nothing else; a good
  one is applied in place on the main thread: table stages whose plugin,
  settings and zones stay keep their source and answers
  (:func:`fastdns.coordinator.answers.build_tables`: no re-sync, no SERVFAIL
  window), the others restart; HTTP endpoints follow; the
  configuration generation is bumped and every worker reconfigures from the
  new snapshot, keeping the sockets of listeners that stay.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry

from fastdns.config import parse as parse_corefile
from fastdns.config.parser import read_config_text
from fastdns.coordinator.http import Endpoints
from fastdns.coordinator.reload import CorefileWatcher, digest
from fastdns.coordinator.answers import stop_tables
from fastdns.plugins.runtime import assign_cache_namespaces
from fastdns.routing import check_plan, engine_config
from fastdns.errors import ConfigError, FastDNSError
from fastdns.metrics import FastDNSCollector

log = logging.getLogger("fastdns.coordinator.ops")

__all__ = ["Ops"]

SPARE_ROWS = 16          # rows beyond the worker count (slots are never reused for others)
SYNC_GRACE = 0.25        # seconds between publishing "synced" and answering /ready 200


class Ops:
    """Probes, metrics, lameduck and reload for one coordinator."""

    def __init__(self, coord: Any) -> None:
        self.coord = coord
        self.counters: Any = None
        self.stats_name: str | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FastDNSCollector(self))
        self.http = Endpoints(self, self.registry)
        self.worker_gen: dict[int, int] = {}
        self.reload_failed = 0
        self.reloads = 0
        self.reload_hash = digest(coord.corefile)
        self.lameduck_until: float | None = None
        self.watcher: CorefileWatcher | None = None
        self.reader = self._read_file
        self._synced_at: float | None = None

    # -- what the collector and the HTTP handlers read ----------------------------

    @property
    def plan(self) -> Any:
        return self.coord.plan

    @property
    def cache(self) -> Any:
        return self.coord.cache

    @property
    def nworkers(self) -> int:
        return int(self.coord.nworkers)

    @property
    def generation(self) -> int:
        """Configurations applied since start (0: the one started with).  Not the
        publisher's ``gen``, which also moves when a source replaces its whole state."""
        return int(self.reloads)

    @property
    def worker_restarts(self) -> int:
        sup = self.coord.supervisor
        return int(sup.restarts_total) if sup is not None else 0

    @property
    def lameduck(self) -> bool:
        return self.lameduck_until is not None

    def not_ready(self) -> list[str]:
        """Names of what is not ready ([] = ready).

        Kubernetes is ready once every source has synced, that state has been
        published to the workers, and SYNC_GRACE has passed since (workers do not
        acknowledge deltas; they apply them within one wakeup of their loop)."""
        out = []
        if not self._track_sync() or time.monotonic() - (self._synced_at or 0.0) < SYNC_GRACE:
            out.append("kubernetes")
        sup = self.coord.supervisor
        if sup is None or not sup.serving(self.worker_gen, self.coord.publisher.gen):
            out.append("workers")
        return out

    def _track_sync(self) -> bool:
        """Whether every Kubernetes source and block is synced; notes since when
        (called from the coordinator's loop too, so the grace starts when the sync
        happens, not at the next probe)."""
        tables = list(self.coord.tables)
        if any(not t.source.synced or not t.synced for t in tables):
            self._synced_at = None
            return False
        if self._synced_at is None:
            self._synced_at = time.monotonic()
        return True

    # -- lifecycle ---------------------------------------------------------------

    def create_counters(self) -> None:
        from fastdns.stats import CounterSegment

        self.stats_name = f"/fastdns-{os.getpid()}-{id(self):x}-stats"
        self.counters = CounterSegment.create(self.stats_name, self.nworkers + SPARE_ROWS)

    def start(self) -> None:
        """HTTP endpoints and the Corefile watcher (after the workers are spawned)."""
        self.http.update(self.plan)
        self._count_upstreams()
        self._start_watcher()

    def _count_upstreams(self) -> None:
        """Health-check failures go to the coordinator's counter row."""
        upstreams = getattr(self.coord, "upstreams", None)
        if upstreams is not None and self.counters is not None:
            upstreams.counters = self.counters.row(self.counters.coordinator_row_index)

    def _start_watcher(self) -> None:
        conf = next(iter(self.plan.confs("reload")), None)
        interval, jitter = (conf.interval, conf.jitter) if conf is not None else (1e9, 0.0)
        if self.watcher is not None:
            self.watcher.interval, self.watcher.jitter = interval, jitter
            return
        self.watcher = CorefileWatcher(self.reader, self.coord.corefile, interval, jitter,
                                       self._changed, self._unreadable)
        self.watcher.start()

    def tick(self) -> None:
        """From the coordinator's loop: end lameduck when its time is up."""
        self._track_sync()
        if self.lameduck_until is not None and time.monotonic() >= self.lameduck_until:
            log.info("lameduck over: stopping")
            self.coord.stop()

    def worker_ready(self, msg: dict[str, Any]) -> None:
        self.worker_gen[int(msg.get("worker", -1))] = int(msg.get("gen", -1))

    def terminate(self) -> None:
        """SIGTERM: lameduck (health's duration) then stop; a second one stops now."""
        conf = next(iter(self.plan.confs("health")), None)
        duration = conf.lameduck if conf is not None else 0.0
        if self.lameduck_until is not None or duration <= 0:
            self.coord.stop()
            return
        self.lameduck_until = time.monotonic() + duration

    def request_reload(self) -> None:
        """SIGHUP: check the Corefile now."""
        if self.watcher is not None:
            self.watcher.check_now()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.http.close()
        if self.counters is not None:
            self.counters.unlink()
            self.counters.close()

    # -- reload --------------------------------------------------------------------

    def _read_file(self) -> str:
        return read_config_text(self.coord.filename)

    def _unreadable(self, error: str) -> None:
        log.error("plugin/reload: cannot read %s: %s", self.coord.filename, error)

    def _changed(self, text: str) -> None:
        """From the watcher thread: apply on the main thread."""
        self.coord.publisher.submit(lambda: self.apply(text))

    def _failed(self, why: str) -> None:
        self.reload_failed += 1
        log.error("plugin/reload: the new Corefile is not loaded, the running one stays: %s", why)

    def apply(self, text: str) -> bool:
        """Apply a new Corefile (main thread). False if it was refused."""
        coord = self.coord
        if text == coord.corefile:
            return True
        try:
            plan = parse_corefile(text, filename=coord.filename, default_port=coord.default_port)
        except FastDNSError as exc:
            self._failed(str(exc))
            return False
        if not plan.servers:
            self._failed("it has no server block (empty or cut short while being written)")
            return False
        old_plan = coord.plan
        try:
            check_plan(plan)
            _bindable(plan, old_plan)
        except FastDNSError as exc:
            self._failed(str(exc))
            return False
        try:
            self.http.update(plan)
        except FastDNSError as exc:
            self.http.update(old_plan)
            self._failed(str(exc))
            return False
        log.info("plugin/reload: reloading (sha512 %s…)", digest(text)[:16])
        econf = engine_config(plan)
        cache_ns = assign_cache_namespaces(plan, econf, getattr(coord, "cache_ns", None))
        try:
            replaced = coord.start_tables(plan, econf)
        except FastDNSError as exc:
            self.http.update(old_plan)
            self._failed(str(exc))
            return False
        stop_tables(replaced)
        coord.corefile = text
        coord.plan = plan
        coord.econf = econf
        coord.cache_ns = cache_ns
        upstreams = getattr(coord, "upstreams", None)
        if upstreams is not None and hasattr(coord, "_start_upstreams"):
            upstreams.stop()
            coord._start_upstreams()
            self._count_upstreams()
        coord.publisher.new_generation()
        self.reload_hash = digest(text)
        self.reloads += 1
        if self.watcher is not None:
            self.watcher.accepted(text)
        self._start_watcher()
        log.info("plugin/reload: reloaded, generation %d", coord.publisher.gen)
        return True

def _bindable(plan: Any, old: Any) -> None:
    """Raise ConfigError if a listener the new plan adds cannot be bound here (the
    workers would fail on it and the server would stop instead of keeping the
    running Corefile)."""
    from fastdns.worker.main import probe_bind

    have = {(li.address, li.port) for li in old.listeners}
    for li in plan.listeners:
        if (li.address, li.port) in have:
            continue
        try:
            probe_bind({"address": li.address, "port": li.port})
        except OSError as exc:
            raise ConfigError(f"cannot bind {exc.filename or li}: {exc.strerror}",
                              plan.source) from None
