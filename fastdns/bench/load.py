"""Run a workload against one server: sockets, probe, engine processes, merge.

``run_load(workload, LoadOptions(...))`` returns a :class:`LoadResult`.
With ``procs > 1`` the engine runs in forked processes that share one start
time (CLOCK_MONOTONIC is system-wide); each reports its counters every second
over a pipe and its histograms at the end.

With ``tcp=True`` each process opens ``sockets`` TCP connections (default
``TCP_CONNECTIONS``, more if the in-flight bound needs more IDs) and spreads
the lookups over them, several queries in flight on each (pipelining).
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastdns.bench._blast import Blaster, monotonic_ns
from fastdns.bench.queries import Workload
from fastdns.bench.stats import Histogram
from fastdns.errors import BenchError

IDS_PER_SOCKET = 65536
MAX_OPEN_IN_FLIGHT = 32768
SOCKET_BUFFER = 8 << 20
TCP_CONNECTIONS = 8
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
COUNTERS = ("sent", "answered", "lost", "late", "unexpected", "truncated", "refused",
            "send_errors", "stalls", "lookups_started", "lookups_ok", "lookups_negative",
            "lookups_lost", "tcp_connects", "tcp_closed", "connect_errors",
            "lat_sum_ns", "lk_sum_ns", "in_flight")


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``[V6]:PORT`` with a numeric address → (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise BenchError(f"bad server {text!r}: expected [ADDRESS]:PORT")
            port_s = rest[1:]
        else:
            port_s = str(default_port)
    elif text.count(":") == 1:
        host, port_s = text.split(":")
    else:
        port_s = str(default_port)
    try:
        port = int(port_s)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise BenchError(f"bad server {text!r}: port must be 1-65535") from None
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise BenchError(f"bad server {text!r}: {host!r} is not a numeric IP address") from None
    return host, port


@dataclass
class LoadOptions:
    """How to send: closed loop (``concurrency`` in flight) unless ``rate`` is set."""

    server: tuple[str, int]
    duration: float = 10.0
    concurrency: int = 100
    rate: float | None = None
    procs: int = 1
    timeout: float = 2.0
    sockets: int | None = None      # per process; default from the in-flight bound
    probe: bool = True              # one query first: a clear error if nothing answers
    tcp: bool = False               # DNS over TCP (RFC 7766), pipelined; sockets = connections
    max_in_flight: int | None = None  # open loop: lookups in flight per process
    # a share of a load spread over ``of`` independent runs (pods of an Indexed
    # Job): ``rate``/``concurrency`` are the totals; this run offers share ``index``
    index: int = 0
    of: int = 1
    start_at: float | None = None   # UNIX time to start sending at (agreed between shares)

    def validate(self) -> None:
        """BenchError on nonsense values."""
        if self.duration <= 0:
            raise BenchError("--duration must be positive")
        if self.timeout <= 0:
            raise BenchError("--timeout must be positive")
        if self.procs < 1 or self.procs > 256:
            raise BenchError("--procs must be 1-256")
        if not 1 <= self.of <= 100_000:
            raise BenchError("--of must be 1-100000")
        if not 0 <= self.index < self.of:
            raise BenchError(f"--index must be 0-{self.of - 1} (with --of {self.of})")
        if self.rate is None and self.share_concurrency() < self.procs:
            raise BenchError("--concurrency must be at least --procs"
                             + (f" in every share (--of {self.of})" if self.of > 1 else ""))
        if self.rate is not None and self.rate <= 0:
            raise BenchError("--rate must be positive")
        if self.sockets is not None and not 1 <= self.sockets <= 1024:
            raise BenchError("--sockets/--connections must be 1-1024")

    def share_rate(self) -> float | None:
        """The open-loop rate this run offers (its share of ``rate``)."""
        return None if self.rate is None else self.rate / self.of

    def share_concurrency(self) -> int:
        """The closed-loop concurrency this run keeps (its share of ``concurrency``)."""
        return _split(self.concurrency, self.of, self.index)


@dataclass
class LoadResult:
    """Merged totals of every process."""

    counters: dict[str, int]
    rcodes: list[int]
    latency: Histogram
    lookup_latency: Histogram
    lat_max_ns: int
    lk_max_ns: int
    per_second: list[list[int]]
    duration: float
    options: LoadOptions
    lookups: bool
    extra: dict = field(default_factory=dict)
    start_unix: float | None = None   # wall-clock time of second 0 of ``per_second``


def _open_sockets(server: tuple[str, int], n: int) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    socks = []
    for _ in range(n):
        s = socket.socket(family, socket.SOCK_DGRAM)
        for opt, force in ((socket.SO_RCVBUF, SO_RCVBUFFORCE), (socket.SO_SNDBUF, SO_SNDBUFFORCE)):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        s.connect(server)
        s.setblocking(False)
        socks.append(s)
    return socks


def _family(server: tuple[str, int]) -> int:
    return socket.AF_INET6 if ":" in server[0] else socket.AF_INET


def tcp_connect(server: tuple[str, int], timeout: float) -> socket.socket:
    """A connected TCP socket (TCP_NODELAY); BenchError says why not."""
    where = f"{server[0]}:{server[1]}"
    s = socket.socket(_family(server), socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout)
        s.connect(server)
    except ConnectionRefusedError:
        s.close()
        raise BenchError(f"{where}: connection refused: nothing listens on TCP port {server[1]}") from None
    except (TimeoutError, OSError) as e:
        s.close()
        raise BenchError(f"{where}: cannot open a TCP connection: {e or 'timed out'}") from None
    return s


def _packed_sockaddr(server: tuple[str, int]) -> bytes:
    """``struct sockaddr_in``/``sockaddr_in6`` of a numeric address, as the kernel wants it."""
    host, port = server
    if ":" in host:
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0))
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, host) + bytes(8))


def probe_tcp(server: tuple[str, int], wire: bytes, timeout: float) -> None:
    """One query over a fresh TCP connection; BenchError says why it got no answer."""
    where = f"{server[0]}:{server[1]}"
    with tcp_connect(server, min(timeout, 2.0)) as s:
        qid = os.getpid() & 0xFFFF
        s.sendall(len(wire).to_bytes(2, "big") + qid.to_bytes(2, "big") + wire[2:])
        buf = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    raise BenchError(f"{where}: the server closed the TCP connection without answering")
                buf += data
                if len(buf) >= 4 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    if buf[2:4] == qid.to_bytes(2, "big"):
                        return
                    buf = buf[2 + int.from_bytes(buf[:2], "big"):]
        except TimeoutError:
            raise BenchError(f"{where}: no answer over TCP within {min(timeout, 2.0)}s") from None
        except ConnectionResetError:
            raise BenchError(f"{where}: the server reset the TCP connection") from None


def probe(server: tuple[str, int], wire: bytes, timeout: float) -> None:
    """Send one query and wait for its answer; BenchError says why not."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    where = f"{server[0]}:{server[1]}"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(server)
        s.settimeout(min(timeout, 2.0))
        for attempt in range(3):
            qid = os.getpid() + attempt & 0xFFFF
            s.send(qid.to_bytes(2, "big") + wire[2:])
            try:
                while True:
                    data = s.recv(4096)
                    if len(data) >= 2 and data[:2] == qid.to_bytes(2, "big"):
                        return
            except ConnectionRefusedError:
                raise BenchError(f"{where}: connection refused (ICMP port unreachable): "
                                 f"nothing listens on UDP port {server[1]}") from None
            except TimeoutError:
                continue
    raise BenchError(f"{where}: no answer to 3 probe queries within {min(timeout, 2.0)}s each: "
                     "is the server running?")


def _split(total: int, parts: int, i: int) -> int:
    return total // parts + (1 if i < total % parts else 0)


def _engine_params(w: Workload, opts: LoadOptions, index: int) -> dict:
    per_query = 2 if any(p >= 0 for p in w.cand_pkt[1::2]) else 1
    # process ``index`` of this run is process ``g`` of ``parts`` over every share
    g, parts = opts.index * opts.procs + index, opts.of * opts.procs
    if opts.rate:
        rate = opts.rate / parts
        # lookups that cannot start for want of a free slot start later, their
        # latency still counted from the intended time; more slots only cost sockets
        in_flight = opts.max_in_flight or min(MAX_OPEN_IN_FLIGHT, int(rate * opts.timeout) + 64)
        conc = 0
    else:
        rate = 0.0
        conc = _split(opts.share_concurrency(), opts.procs, index)
        in_flight = conc
    # keep each socket's ID space far from full, timed-out IDs included
    nsock = opts.sockets or max(1, math.ceil(in_flight * per_query * 4 / IDS_PER_SOCKET))
    if opts.tcp and not opts.sockets:
        nsock = max(nsock, min(TCP_CONNECTIONS, in_flight))
    return {"rate": rate, "concurrency": conc, "max_lookups": in_flight, "nsock": nsock,
            "first_item": g * len(w.item_first) // parts}


def _run_one(w: Workload, opts: LoadOptions, index: int, t0: int,
             report: Callable[[str, object], None]) -> None:
    p = _engine_params(w, opts, index)
    socks: list[socket.socket] = []
    try:
        if opts.tcp:
            # the Blaster owns TCP connections (it reopens closed ones): hand over the fds
            for _ in range(p["nsock"]):
                socks.append(tcp_connect(opts.server, min(opts.timeout, 2.0)))
            for s in socks:
                s.setblocking(False)
            fds = [s.detach() for s in socks]
        else:
            socks = _open_sockets(opts.server, p["nsock"])
            fds = [s.fileno() for s in socks]
        try:
            b = Blaster(fds, *w.engine_args(), concurrency=p["concurrency"],
                        rate=p["rate"], t0=t0, duration_ns=int(opts.duration * 1e9),
                        timeout_ns=int(opts.timeout * 1e9), max_lookups=p["max_lookups"],
                        first_item=p["first_item"], tcp=opts.tcp,
                        sockaddr=_packed_sockaddr(opts.server) if opts.tcp else b"",
                        family=_family(opts.server))
        except BaseException:
            if opts.tcp:
                for fd in fds:
                    os.close(fd)
            raise
        _sleep_until(t0)
        tick = 1
        while not b.step(t0 + tick * 1_000_000_000):
            report("tick", (tick, b.counters()))
            tick += 1
        report("done", (b.counters(), b.histogram("query"), b.histogram("lookup"), b.per_second()))
    finally:
        for s in socks:
            s.close()


def _sleep_until(t_ns: int) -> None:
    """Sleep until monotonic ``t_ns`` (the closed loop starts when stepped)."""
    while True:
        left = t_ns - monotonic_ns()
        if left <= 0:
            return
        time.sleep(min(left / 1e9, 1.0))


def _child(w: Workload, opts: LoadOptions, index: int, t0: int,
           conn: multiprocessing.connection.Connection) -> None:
    try:
        _run_one(w, opts, index, t0, lambda kind, data: conn.send((kind, data)))
    except BaseException as e:  # reported to the parent, which raises BenchError
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _merge(results: list[tuple], w: Workload, opts: LoadOptions) -> LoadResult:
    counters = {k: sum(r[0][k] for r in results) for k in COUNTERS}
    rcodes = [sum(r[0]["rcodes"][i] for r in results) for i in range(16)]
    lat, lk = Histogram(), Histogram()
    nsec = max(len(r[3]) for r in results)
    per_second = [[0] * 5 for _ in range(nsec)]
    for c, h, lh, ps in results:
        lat.merge(h)
        lk.merge(lh)
        for i, row in enumerate(ps):
            for k in range(5):
                per_second[i][k] += row[k]
    return LoadResult(counters, rcodes, lat, lk,
                      max(r[0]["lat_max_ns"] for r in results),
                      max(r[0]["lk_max_ns"] for r in results),
                      per_second, opts.duration, opts, w.lookups)


ProgressFn = Callable[[int, dict[str, int]], None]


def run_load(w: Workload, opts: LoadOptions, progress: ProgressFn | None = None) -> LoadResult:
    """Run ``w`` against ``opts.server``; ``progress(second, totals)`` once a second.

    With ``opts.start_at`` (UNIX time) sending starts then (the probe first);
    a start more than a second in the past is an error."""
    opts.validate()
    if opts.probe:
        (probe_tcp if opts.tcp else probe)(opts.server, w.first_query(), opts.timeout)
    wall, mono = time.time(), monotonic_ns()
    if opts.start_at is not None:
        if opts.start_at < wall - 1.0:
            raise BenchError(f"--start-at {opts.start_at:.3f} is {wall - opts.start_at:,.1f} s in the past: "
                             "choose a later start (leave time to schedule every share)")
        t0 = mono + max(0, int((opts.start_at - wall) * 1e9))
    else:
        t0 = mono + (10_000_000 if opts.procs == 1 else 300_000_000)
    start_unix = round(wall + (t0 - mono) / 1e9, 6)
    if opts.procs == 1:
        done: list[tuple] = []

        def report(kind: str, data: object) -> None:
            if kind == "tick" and progress:
                progress(*data)  # type: ignore[misc]
            elif kind == "done":
                done.append(data)  # type: ignore[arg-type]

        _run_one(w, opts, 0, t0, report)
        res = _merge(done, w, opts)
    else:
        res = _run_procs(w, opts, progress, t0)
    res.start_unix = start_unix
    return res


def _run_procs(w: Workload, opts: LoadOptions, progress: ProgressFn | None, t0: int) -> LoadResult:
    ctx = multiprocessing.get_context("fork")
    conns, procs = [], []
    try:
        for i in range(opts.procs):
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(w, opts, i, t0, child), daemon=True)
            p.start()
            child.close()
            conns.append(parent)
            procs.append(p)
        ticks: dict[int, dict[int, dict]] = {}
        results: dict[int, tuple] = {}
        printed = 0
        live = dict(enumerate(conns))
        while live:
            for conn in multiprocessing.connection.wait(list(live.values())):
                i = next(k for k, c in live.items() if c is conn)
                try:
                    kind, data = live[i].recv()
                except EOFError:
                    del live[i]
                    if i not in results:
                        raise BenchError(f"load process {i} died") from None
                    continue
                if kind == "error":
                    raise BenchError(f"load process {i}: {data}")
                if kind == "done":
                    results[i] = data
                elif kind == "tick":
                    second, totals = data
                    ticks.setdefault(second, {})[i] = totals
            while progress and len(ticks.get(printed + 1, {})) == opts.procs:
                printed += 1
                rows = ticks.pop(printed).values()
                progress(printed, {k: sum(r[k] for r in rows) for k in COUNTERS})
        return _merge([results[i] for i in sorted(results)], w, opts)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
