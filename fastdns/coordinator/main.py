"""The coordinator: the process `fastdns serve` runs.

Parses the Corefile, starts the sources (Kubernetes), publishes compiled
answers to the workers, supervises them, and stops cleanly on SIGTERM/SIGINT
(workers stopped, IPC directory and shared memory removed).  It never sits in
the query path.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

import zmq

from fastdns import demo
from fastdns.cli.corefile import load_corefile
from fastdns.config import parse as parse_corefile
from fastdns.config.plan import Plan
from fastdns import memory
from fastdns.coordinator import leftovers
from fastdns.coordinator.answers import TableAnswers, build_tables, stop_tables
from fastdns.coordinator.ops import Ops
from fastdns.coordinator.publisher import Publisher
from fastdns.coordinator.supervisor import Supervisor, default_workers
from fastdns.errors import ServerError
from fastdns.ipc import codec, schema
from fastdns.plugins.runtime import assign_cache_namespaces
from fastdns.routing import check_plan, engine_config

log = logging.getLogger("fastdns.coordinator")

TICK_INTERVAL = 0.5     # seconds between sequence ticks to the workers

SNAPSHOT_POLL = 0.25   # seconds between stats of a `snapshot FILE`: a change reaches workers < 1 s


class Coordinator:
    """One running server: plan, sources, publisher, workers."""

    def __init__(self, corefile: str, filename: str, *, default_port: int = 53,
                 workers: int | None = None, log_level: str = "info") -> None:
        self.corefile = corefile
        self.filename = filename
        self.default_port = default_port
        self.plan: Plan = parse_corefile(corefile, filename=filename, default_port=default_port)
        check_plan(self.plan)
        self.econf = engine_config(self.plan)
        self.cache_ns = assign_cache_namespaces(self.plan, self.econf)
        leftovers.sweep()
        self.nworkers = workers or default_workers()
        self.log_level = log_level
        self.tables: list[TableAnswers] = []     # by table id (fastdns.plugins.runtime)
        self.cache = None
        self.cache_name: str | None = None
        self.upstreams: Any = None
        self.publisher = Publisher(self._snapshot)
        self.supervisor: Supervisor | None = None
        self.stop_event = threading.Event()
        self.started = threading.Event()
        self.error: str | None = None
        self.ops = Ops(self)        # probes, metrics, lameduck, reload

    # -- state --------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        """What every worker runs: the plan and engine configuration computed here
        once (a worker never re-reads the Corefile, its files or the environment)."""
        return {"plan": codec.pack_plan(self.plan), "engine": self.econf,
                "filename": self.filename, "stats": self.ops.stats_name}

    def _snapshot(self) -> dict[str, Any]:
        with contextlib.ExitStack() as held:       # the sources' stores are read live:
            for t in list(self.tables):            # no change while they are, and every
                held.enter_context(t.source.lock)  # change compiled so far is published
            self.publisher.drain()                 # first, so the stores match the seq
            tables = [t.snapshot() for t in self.tables]
        blocks: list[dict[str, Any]] = [{} for _ in self.plan.servers]
        if self.upstreams is not None:
            self.upstreams.fill(blocks)
        return {"config": self._config(), "blocks": blocks, "tables": tables}

    def _on_delta(self, table: TableAnswers, delta: Any) -> None:
        """From a source thread: hand the delta to the main thread."""
        self.publisher.submit(lambda: self._apply(table, delta))

    def _apply(self, table: TableAnswers, delta: Any) -> None:
        if not any(t is table for t in self.tables):
            return                                 # a source a reload has replaced
        t0 = time.perf_counter()
        changed = table.apply(delta)
        if changed is None:                        # a whole new state: workers fetch a snapshot
            table.synced = bool(table.source.synced)
            self.publisher.new_generation()
            log.info("%s table %d: %d names compiled, generation %d", table.plugin, table.tid,
                     len(table), self.publisher.gen)
            return
        up, dels = changed
        ops: list[list[Any]] = []
        if up or dels:
            ops.append([schema.OP_NAMES, table.tid, up, dels])
        synced = bool(table.source.synced)
        if synced != table.synced:
            table.synced = synced
            ops.append([schema.OP_SYNCED, table.tid, synced])
        self.publisher.publish(ops)
        log.debug("%s table %d: %d names changed, %d deleted in %.1f ms", table.plugin,
                  table.tid, len(up), len(dels), (time.perf_counter() - t0) * 1e3)

    # -- lifecycle ----------------------------------------------------------

    def start_tables(self, plan: Plan, econf: dict[str, Any]) -> list[TableAnswers]:
        """The tables of ``plan`` (sources kept from the running ones where
        unchanged, the others started); returns the replaced ones, still running.
        On an error nothing changes."""
        ns_addresses = tuple(sorted({li.address for li in plan.listeners if li.address}))
        tables, unused = build_tables(plan, econf, self.tables, self._on_delta,
                                      ns_addresses=ns_addresses, poll_interval=SNAPSHOT_POLL)
        self.tables = tables
        return unused

    def _start_cache(self) -> None:
        confs = [s.plugin("cache") for s in self.plan.servers if s.plugin("cache") is not None]
        if not confs:
            return
        from fastdns._shmcache import SharedCache

        capacity = max(c.success_capacity + c.denial_capacity for c in confs)
        self.cache_name = f"/fastdns-{os.getpid()}-cache"
        SharedCache.unlink_name(self.cache_name)
        self.cache = SharedCache.create(self.cache_name, capacity,
                                        counter_rows=max(64, self.nworkers + 2))

    def _start_upstreams(self) -> None:
        """Health probes of the ``forward`` upstreams (fastdns.coordinator.upstreams)."""
        from fastdns.coordinator.upstreams import UpstreamHealth

        self.upstreams = UpstreamHealth(self.plan, self.publisher.submit, self.publisher.publish)
        self.upstreams.start()

    def _handle(self, ident: bytes, msg: dict[str, Any]) -> None:
        assert self.supervisor is not None
        kind = msg["k"]
        if kind == schema.READY:
            self.supervisor.mark_ready(int(msg.get("worker", -1)))
            self.ops.worker_ready(msg)
            if self.supervisor.all_ready:
                self.started.set()
                self.publisher.release_snapshot()   # every worker has it: free the bytes
        elif kind == schema.FATAL:
            self.error = f"worker {msg.get('worker')}: {msg.get('error')}"
            log.error("%s", self.error)
            self.stop_event.set()

    @property
    def synced(self) -> bool:
        return all(t.source.synced for t in self.tables)

    def run(self) -> int:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when run from the CLI)."""
        try:
            self._start_cache()
            self.ops.create_counters()
            self.start_tables(self.plan, self.econf)
            self._start_upstreams()
            self.publisher.drain()         # the sources' first state, before any worker asks
            self.supervisor = self._make_supervisor()
            self.supervisor.start()
            self.ops.start()
            poller = zmq.Poller()
            poller.register(self.publisher.router, zmq.POLLIN)
            last_tick = 0.0
            dirty = False
            while not self.stop_event.is_set():
                poller.poll(50)
                self.publisher.requests(self._handle)
                if self.publisher.drain():
                    dirty = True
                if time.monotonic() - last_tick >= TICK_INTERVAL:
                    if dirty and not self.publisher.holds_snapshot:
                        memory.trim()          # updates applied: return their garbage's pages
                        dirty = False
                    last_tick = time.monotonic()
                    self.publisher.tick()
                self.ops.tick()
                if self.stop_event.is_set():
                    break                  # workers may be dying of the same signal: no respawn
                self.supervisor.reap()
                if self.supervisor.fatal and not self.error:
                    self.error = self.supervisor.fatal
                    self.stop_event.set()
        finally:
            self.shutdown()
        return 1 if self.error else 0

    def _make_supervisor(self) -> Supervisor:
        """The workers' keeper (:class:`fastdns.server.Server` runs one in-process instead)."""
        return Supervisor(self.nworkers, self.publisher.pub_ep, self.publisher.router_ep,
                          self.cache_name, self.log_level)

    def stop(self) -> None:
        self.stop_event.set()

    def shutdown(self) -> None:
        if self.upstreams is not None:
            self.upstreams.stop()
        stop_tables(self.tables)
        if self.supervisor is not None:
            self.supervisor.stop()
        self.publisher.close()
        if self.cache is not None:
            self.cache.close()
            self.cache.unlink()
            self.cache = None
        self.ops.close()


def run(args: argparse.Namespace) -> int:
    """`fastdns serve`: run until SIGTERM/SIGINT."""
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s fastdns %(name)s %(levelname)s %(message)s")
    memory.configure()                 # before the cluster is read: see fastdns.memory
    text, filename, port, is_demo = load_corefile(args.conf, args.port, args)
    coord = Coordinator(text, filename, default_port=port, workers=args.workers,
                        log_level=args.log_level)
    plumbing = None
    if args.setup_interface or args.setup_iptables:
        from fastdns.nodelocal import NodeLocalPlumbing

        if not args.localip:
            raise ServerError("--setup-interface/--setup-iptables need --localip")
        if args.sync_interval < 0:
            raise ServerError(f"--sync-interval {args.sync_interval:g}: must be 0 (never) or more")
        plumbing = NodeLocalPlumbing(args.localip.split(","), args.interface_name,
                                     setup_interface=args.setup_interface,
                                     setup_iptables=args.setup_iptables,
                                     skip_teardown=args.skip_teardown)
        plumbing.setup()
    resync_stop = threading.Event()
    resync = None
    if plumbing is not None and plumbing.iptables is not None and args.sync_interval > 0:
        resync = threading.Thread(target=plumbing.resync_every,
                                  args=(args.sync_interval, resync_stop), daemon=True,
                                  name="nodelocal-resync")
        resync.start()
    signal.signal(signal.SIGTERM, lambda *_: coord.ops.terminate())   # lameduck, then stop
    signal.signal(signal.SIGHUP, lambda *_: coord.ops.request_reload())
    coord.ops.reader = lambda: load_corefile(args.conf, args.port, args)[0]
    signal.signal(signal.SIGINT, lambda *_: coord.stop())
    if is_demo:
        threading.Thread(target=_banner, args=(coord,), daemon=True).start()
    try:
        code = coord.run()
    finally:
        resync_stop.set()
        if resync is not None:
            resync.join(10)
        if plumbing is not None:
            plumbing.teardown()
    if coord.error:
        raise ServerError(coord.error)
    return code


def _banner(coord: Coordinator) -> None:
    if not coord.started.wait(30):
        return
    print(demo.banner(coord.plan), flush=True)
