"""A worker process: its own SO_REUSEPORT sockets, the C engine, the miss path.

Started by the coordinator through :mod:`fastdns.worker.boot` (which makes
it import the coordinator's own ``fastdns``) with ``--index I --pub EP
--router EP [--shm NAME] [--status-fd FD]``.  It asks the coordinator for a snapshot,
binds its sockets, reports ready, then answers until SIGTERM or a ``stop``
message.  Exit codes: see :mod:`fastdns.ipc.schema`.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from typing import Any

import zmq

from fastdns import limits, memory
from fastdns._loop import Engine
from fastdns.errors import FastDNSError
from fastdns.ipc import codec, schema
from fastdns.worker import cforward, ops
from fastdns.worker.boot import StartupStatus
from fastdns.worker.miss import MissHandler
from fastdns.worker.sync import TableSync

log = logging.getLogger("fastdns.worker")

SNAPSHOT_TIMEOUT = 30.0
POLL_MS = 100
MAX_HELD = 10_000     # deltas kept while a snapshot is on its way (more: the tick catches up)


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us if the coordinator dies (no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)           # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        pass


def _listener_socket(li: dict[str, Any], kind: int) -> socket.socket:
    """A bound SO_REUSEPORT socket of ``kind`` for listener ``li`` (not listening)."""
    host = li["address"] or "0.0.0.0"
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not li["address"]:
        fam = socket.AF_INET6 if socket.has_ipv6 and _v6_works() else socket.AF_INET
        host = "::" if fam == socket.AF_INET6 else "0.0.0.0"
    s = socket.socket(fam, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if fam == socket.AF_INET6 and not li["address"]:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if kind == socket.SOCK_DGRAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((host, li["port"]))
    except OSError as exc:            # name the address in the coordinator's error
        s.close()
        proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        raise OSError(exc.errno, exc.strerror, f"{host}:{li['port']}/{proto}") from None
    return s


def bind_sockets(listeners: list[dict[str, Any]]) -> tuple[list[socket.socket], list[socket.socket]]:
    """One UDP and one TCP SO_REUSEPORT socket per listener (this worker's own)."""
    udp: list[socket.socket] = []
    tcp: list[socket.socket] = []
    try:
        for li in listeners:
            u = _listener_socket(li, socket.SOCK_DGRAM)
            udp.append(u)
            t = _listener_socket(li, socket.SOCK_STREAM)
            tcp.append(t)
            t.listen(1024)
            u.setblocking(False)
            t.setblocking(False)
    except OSError:
        for s in udp + tcp:
            s.close()
        raise
    return udp, tcp


def probe_bind(li: dict[str, Any]) -> None:
    """Raise OSError unless the workers could bind listener ``li`` (UDP and TCP)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        _listener_socket(li, kind).close()


def _v6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Worker:
    """The worker's event loop (Python around the C engine)."""

    def __init__(self, index: int, pub: str, router: str, shm: str | None,
                 status: StartupStatus | None = None) -> None:
        self.index = index
        self.status = status or StartupStatus(None)
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(pub)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(router)
        self.engine = Engine()
        self.sync = TableSync(self.engine)
        self.cache = None
        if shm:
            from fastdns._shmcache import SharedCache
            self.cache = SharedCache.attach(shm)
            self.cache.worker_slot(index + 1)
            self.engine.attach_cache(self.cache)
        self.udp: list[socket.socket] = []
        self.tcp_listen: list[socket.socket] = []
        self.misses: list[tuple[int, bytes, Any, int]] = []        # (.., the stage it came from)
        self.tcp_misses: list[tuple[int, bytes, Any, int, int]] = []  # answered by tcp_send
        self.miss: MissHandler | None = None
        self.stopping = False
        self.config: dict[str, Any] | None = None
        self.pending_hello = False
        self.held: list[dict[str, Any]] = []   # deltas received while waiting for a snapshot
        self._cforward: dict[int, dict[str, Any]] = {}   # blocks forwarded in C: their spec

    # -- coordinator --------------------------------------------------------

    def hello(self) -> None:
        self.dealer.send(codec.pack({"k": schema.HELLO, "worker": self.index, "pid": os.getpid()}))
        self.pending_hello = True

    def wait_snapshot(self) -> dict[str, Any]:
        self.hello()
        if not self.dealer.poll(int(SNAPSHOT_TIMEOUT * 1000)):
            raise SystemExit(schema.EXIT_NO_COORDINATOR)
        return self._recv_router()

    def _recv_router(self) -> dict[str, Any]:
        """One message from the coordinator's ROUTER (a snapshot's payload frames
        are read in place, not copied)."""
        frames = self.dealer.recv_multipart(copy=False)
        return codec.unpack_frames([f.buffer for f in frames])

    def install(self, snap: dict[str, Any]) -> None:
        """Apply a snapshot; on a new configuration reconfigure (and rebind) first."""
        self.pending_hello = False
        config = snap["config"]
        if config != self.config:
            plan = codec.unpack_plan(config["plan"])    # as the coordinator resolved it
            econf = config["engine"]
            ops.prepare(self, plan, econf, config)      # counter row, query log
            self.engine.configure(econf)
            self._size_descriptors(plan)
            if self.config is None or _listeners(econf) != _listeners(self._econf):
                self._rebind(econf["listeners"])
            self._econf = econf
            self.miss = MissHandler(plan, econf, self.engine, self.cache)
            _debug_logging(any(bc.get("debug") for bc in econf["blocks"]))
            self.plan = plan
            self.config = config
            self._plugins_changed(plan)
        self.sync.apply_snapshot(snap, len(self._econf["blocks"]))
        held, self.held = self.held, []
        for msg in held:                    # deltas that arrived while the snapshot was on its way
            if msg["gen"] == self.sync.gen and msg["seq"] > self.sync.seq:
                self.on_delta(msg)
        for table in snap["tables"]:        # the tables hold their own copy now
            table["packed"] = b""
        memory.trim()                       # give the snapshot's pages back

    def _size_descriptors(self, plan: Any) -> None:
        """Make room for every limit at once (fastdns.limits); if the hard limit
        forbids it, take the shortfall out of the TCP client connections."""
        upstreams = sum(len(c.to) for c in plan.confs("forward"))
        need = limits.worker_descriptors(upstreams)
        have = limits.raise_descriptor_limit(need)
        if self.config is not None:
            return                  # TCP slots are sized once, before any connection
        cap = limits.TCP_MAX_CONNECTIONS - max(0, need - have)
        if cap < limits.TCP_MAX_CONNECTIONS:
            log.warning("worker %d: descriptor limit %d < %d: at most %d TCP connections",
                        self.index, have, need, max(cap, 1))
        self.engine.set_forward_limits(limits.UPSTREAM_MAX_PENDING, limits.UPSTREAM_PORTS,
                                       limits.UPSTREAM_TCP_CONNS)
        self.engine.set_tcp_limits(max(cap, 1), limits.TCP_IDLE_TIMEOUT,
                                   limits.TCP_MAX_BUFFERED, limits.TCP_ACCEPT_BATCH,
                                   limits.TCP_MAX_PER_SOURCE, limits.TCP_EVICT_IDLE)

    def _plugins_changed(self, plan: Any) -> None:
        """Worker-side state of plugins that spans blocks (forward's ``attach``),
        once per plan, each plugin's at most once."""
        from fastdns.plugins.runtime import plugin, resolve

        done: set[str] = set()
        for server in plan.servers:
            for pc in server.plugins:
                ref = plugin(pc.name).attach
                if ref is not None and ref not in done:
                    done.add(ref)
                    resolve(ref)(self, plan)

    def _rebind(self, listeners: list[dict[str, Any]]) -> None:
        """Sockets for ``listeners``: those of addresses already bound are kept (a
        reload loses none of their queued queries), the others opened or closed."""
        old_keys = _listeners(self._econf) if self.config is not None else []
        old = dict(zip(old_keys, zip(self.udp, self.tcp_listen)))
        new_keys = [(li["address"], li["port"]) for li in listeners]
        udp, tcp, fresh = [], [], []
        try:
            for key, li in zip(new_keys, listeners):
                if key in old:
                    u, t = old[key]
                else:
                    (u,), (t,) = bind_sockets([li])
                    fresh += [u, t]
                udp.append(u)
                tcp.append(t)
        except OSError:
            for s in fresh:                    # keep serving the old set
                s.close()
            raise
        for key in new_keys:
            old.pop(key, None)
        for u, t in old.values():
            u.close()
            t.close()
        if new_keys[:len(old_keys)] != old_keys:
            self.engine.tcp_close_all()        # connections' listener indexes changed
        self.engine.set_tcp_listeners([(t.fileno(), i) for i, t in enumerate(tcp)])
        self.udp, self.tcp_listen = udp, tcp

    def on_delta(self, msg: dict[str, Any]) -> None:
        if msg["k"] == schema.STOP:
            self.stopping = True
            return
        if msg["k"] == schema.TICK:
            behind = msg["gen"] != self.sync.gen or msg["seq"] > self.sync.seq
            if behind and not self.pending_hello:
                log.info("worker %d: behind at seq %s, asking for a snapshot", self.index, msg["seq"])
                self.hello()
            return
        if msg["k"] != schema.DELTA:
            return
        if self.pending_hello:
            if len(self.held) < MAX_HELD:
                self.held.append(msg)       # applied after the snapshot if it is newer
            return
        state = self.sync.apply_delta(msg)
        if state in ("gap", "regen") and not self.pending_hello:
            log.info("worker %d: %s at seq %s, asking for a snapshot", self.index, state, msg["seq"])
            self.hello()

    # -- queries ------------------------------------------------------------

    def _tcp_misses(self) -> None:
        """TCP queries the C engine could not answer: the answer goes back through
        ``Engine.tcp_send`` on the connection it came from (if still open)."""
        misses, self.tcp_misses = self.tcp_misses, []
        t0 = time.monotonic()
        for m in misses:
            li, packet, addr, token, stage = m[:5]
            hint = m[5] if len(m) > 5 else None     # the C forwarder's: what upstream said

            def reply(data: bytes, src: int = 0, token: int = token, li: int = li,
                      packet: bytes = packet, addr: Any = addr) -> None:
                if self.engine.tcp_send(token, data):
                    ops.replied(self, li, packet, data, addr, t0, tcp=True, src=src)
            self.miss.handle(li, packet, reply, tcp=True, address=addr, start=stage, hint=hint)

    def _udp_misses(self) -> None:
        misses, self.misses = self.misses, []
        t0 = time.monotonic()
        for m in misses:
            li, packet, addr, stage = m[:4]
            hint = m[4] if len(m) > 4 else None     # the C forwarder's: what upstream said
            sock = self.udp[li]

            def reply(data: bytes, src: int = 0, addr: Any = addr, sock: socket.socket = sock,
                      li: int = li, packet: bytes = packet) -> None:
                try:
                    sock.sendto(data, addr)
                except OSError:
                    pass
                ops.replied(self, li, packet, data, addr, t0, src=src)
            self.miss.handle(li, packet, reply, address=addr, start=stage, hint=hint)

    def _drain_zmq(self) -> None:
        """Handle every queued coordinator message (ZeroMQ's FD is edge-triggered:
        it must be drained before the loop blocks on it again)."""
        while self.sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self.on_delta(codec.unpack(self.sub.recv()))
        while self.dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            msg = self._recv_router()
            if msg["k"] == schema.SNAPSHOT:
                self.install(msg)
                self.dealer.send(codec.pack({"k": schema.READY, "worker": self.index,
                                             "seq": self.sync.seq, "gen": self.sync.gen}))

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.install(self.wait_snapshot())
        except OSError as exc:
            return self._fatal(f"cannot bind: {exc}")
        except FastDNSError as exc:
            return self._fatal(str(exc))
        self.dealer.send(codec.pack({"k": schema.READY, "worker": self.index,
                                     "seq": self.sync.seq, "gen": self.sync.gen}))
        self.status.ready()
        ppid = os.getppid()
        last_expire = time.monotonic()
        zmq_fds = {self.sub.getsockopt(zmq.FD), self.dealer.getsockopt(zmq.FD)}
        while not self.stopping:
            self._drain_zmq()
            udp = [(s.fileno(), i) for i, s in enumerate(self.udp)]
            wake = list(zmq_fds)
            extra = getattr(self, "extra_fds", None)
            if extra:
                wake += list(extra())
            woke = self.engine.run(udp, wake, POLL_MS, self.misses, self.tcp_misses)
            failed = self.engine.take_forward_errors()
            if failed:
                cforward.report(self, failed)
            ops.drain(self)
            if self.misses:
                self._udp_misses()
            if self.tcp_misses:
                self._tcp_misses()
            for fd in woke:
                if fd in zmq_fds:
                    continue                      # drained at the top of the loop
                handler = getattr(self, "on_fd", None)
                if handler is not None:
                    handler(fd, zmq.POLLIN)
            timer = getattr(self, "on_timer", None)
            if timer is not None:
                timer()
            now = time.monotonic()
            if now - last_expire > 1.0:
                last_expire = now
                if os.getppid() != ppid:
                    break
        self.close()
        return schema.EXIT_OK

    def _fatal(self, error: str) -> int:
        """Tell the coordinator this configuration cannot run here (do not respawn)."""
        self.status.fail(error)
        self.dealer.send(codec.pack({"k": schema.FATAL, "worker": self.index, "error": error}))
        time.sleep(0.2)
        return schema.EXIT_CONFIG

    def close(self) -> None:
        self.engine.tcp_close_all()
        for s in self.udp + self.tcp_listen:
            s.close()
        if self.cache is not None:
            self.cache.close()
        self.sub.close(0)
        self.dealer.close(0)
        self.ctx.term()


def _listeners(econf: dict[str, Any]) -> list[tuple[str, int]]:
    return [(li["address"], li["port"]) for li in econf["listeners"]]


_LEVEL: list[int] = []


def _debug_logging(on: bool) -> None:
    """*debug* in any block: the worker's fastdns loggers at debug level (CoreDNS's
    debug is process-wide too); without it, back to the level the worker started with."""
    root = logging.getLogger("fastdns")
    if not _LEVEL:
        _LEVEL.append(root.level)
    root.setLevel(logging.DEBUG if on else _LEVEL[0])


def main(argv: list[str] | None = None, status: StartupStatus | None = None) -> int:
    """Run one worker until it is told to stop; returns its exit code."""
    ap = argparse.ArgumentParser(prog="fastdns-worker")
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--pub", required=True)
    ap.add_argument("--router", required=True)
    ap.add_argument("--shm", default="")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--status-fd", type=int, default=None,
                    help="pipe for one line on why the worker could not start")
    args = ap.parse_args(argv)
    if status is None:
        status = StartupStatus(args.status_fd)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s worker-{args.index} %(name)s %(levelname)s %(message)s")
    _die_with_parent()
    memory.configure()
    random.seed(os.urandom(16))        # query IDs / ports must differ per worker
    w = Worker(args.index, args.pub, args.router, args.shm or None, status)
    return w.run()


if __name__ == "__main__":
    sys.exit(main())
