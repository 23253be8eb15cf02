"""The miss path to upstream servers (CoreDNS ``forward`` semantics) and the cache fill.

One :class:`Forwarder` per worker owns the upstream sockets; each server
block with ``forward`` gets a :class:`BlockForwarder` registered on the
worker's miss handler.

* UDP: non-blocking *connected* sockets (the kernel drops datagrams from any
  other source), a fresh query ID per query from the kernel's CSPRNG, and a fresh socket (new
  random source port) every :data:`~fastdns.limits.UDP_USES_PER_SOCKET` (1)
  queries per upstream.  A retired socket is closed as soon as its last
  pending query is answered or given up.  An answer is accepted only if its
  ID is pending on that socket and its question (name case-insensitively,
  type, class) is the one asked; anything else is ignored and never cached.
* TCP (``force_tcp``, TCP clients without ``prefer_udp``, UDP answers with
  TC) and DNS over TLS go over non-blocking, pipelined connections driven by
  the worker loop (:mod:`fastdns.worker.streams`): up to
  ``UPSTREAM_TCP_CONNS_PER_UPSTREAM`` per upstream (one bad upstream cannot
  take another's), another opened once each has 16 queries in flight; an
  overall deadline of ``read_timeout`` + ``UPSTREAM_TCP_SLACK`` per query
  (connecting, the TLS handshake and frames that are not the answer do not
  extend it); idle connections closed after ``expire``, none used past
  ``max_age``, at most ``max_idle_conns`` kept idle.
* Limits (:mod:`fastdns.limits`): at most ``UPSTREAM_UDP_SOCKETS`` upstream
  sockets (at the cap the current one is used on), ``UPSTREAM_MAX_PENDING``
  client queries waiting on upstreams (past it: REFUSED).
* A query that times out (``read_timeout``), is refused (ICMP) or answers
  garbage is retried on the next upstream in ``policy`` order, healthy ones
  first (coordinator health + this worker's own consecutive failures); when
  every upstream failed the waiters get SERVFAIL.
* Identical queries in flight (name, type, class, DO) go upstream once; each
  waiter gets the answer with its own ID, question case and size limit.
* With ``cache`` the answer is stored in the shared cache (see
  :mod:`fastdns.worker.cachefill`); expired entries are served under
  ``serve_stale`` and refreshed; popular entries are refreshed before they
  expire under ``prefetch``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastdns import limits, wire
from fastdns.errors import EncodeError, FormatError
from fastdns.plugins.cache.conf import CacheConf
from fastdns.plugins.forward.conf import ForwardConf, Upstream
from fastdns.worker.cachefill import CachePolicy
from fastdns.worker.fwdstats import F_WAITING, ForwardCounters, SharedWaiting
from fastdns.worker.neterr import hostport, local_addr, op_error, reason
from fastdns.worker.streams import StreamConn

log = logging.getLogger("fastdns.worker.forward")

Reply = Callable[[bytes], None]

USES_PER_SOCKET = limits.UDP_USES_PER_SOCKET
TCP_CONNS = limits.UPSTREAM_TCP_CONNS_PER_UPSTREAM
TCP_SPREAD = 16             # in flight on every connection: open another (as the C forwarder)
PREFETCH_SCAN = 1.0         # seconds between prefetch scans
PREFETCH_TRACK = 20000      # entries one worker tracks for prefetch
EDNS_UDP = 1232
_OPT = b"\x00\x00\x29" + EDNS_UDP.to_bytes(2, "big") + b"\x00\x00"


def _well_formed(data: bytes) -> bool:
    """Does dnspython read the whole message (an answer to relay as it is)?"""
    import dns.exception
    import dns.message
    try:
        dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError):
        return False
    return True


def client_limit(q: wire.Query, tcp: bool) -> int:
    """The size a response to ``q`` may have (as the C engine computes it)."""
    if tcp:
        return 65535
    size = q.udp_size
    return min(size, EDNS_UDP) if size else 512


# -- upstream state -------------------------------------------------------------


@dataclass(eq=False)
class UpstreamState:
    """One upstream as one worker sees it."""

    up: Upstream
    flag: int                       # index in the block's published health flags
    fails: int = 0                  # consecutive failures seen by this worker
    down_until: float = 0.0
    sock: socket.socket | None = None
    uses: int = 0
    conns: list[StreamConn] = field(default_factory=list)     # its TCP/TLS connections
    ctr: int = -1                   # its counters in the worker's row (fwdstats); -1: none

    @property
    def addr(self) -> tuple[str, int]:
        return (self.up.host, self.up.port)


class ForwardGroup:
    """One ``forward FROM TO…`` directive of one block."""

    def __init__(self, conf: ForwardConf, flag0: int, slot0: int = -1) -> None:
        self.conf = conf
        self.zone = wire.name_from_text(conf.from_zone)
        self.excepts = tuple(wire.name_from_text(z) for z in conf.except_zones)
        self.everything = self.zone == b"\x00" and not self.excepts
        self.ups = [UpstreamState(u, flag0 + i,
                                  ctr=ForwardCounters.base(slot0 + i) if slot0 >= 0 else -1)
                    for i, u in enumerate(conf.to)]
        self.rr = 0
        self.inflight = 0               # clients waiting (this worker's Python forwarder)
        base = ForwardCounters.base(slot0) if slot0 >= 0 else -1
        self.waiting_off = base + F_WAITING if base >= 0 else -1
        self.shared: SharedWaiting | None = None      # every worker's gauges (max_concurrent)
        self.tls: ssl.SSLContext | None = None
        if any(u.scheme == "tls" for u in conf.to):
            self.tls = _client_tls(conf)

    def waiting_all(self) -> int:
        """Clients waiting on this directive in every worker (C and Python forwarders),
        or in this forwarder when the counter rows are not shared."""
        if self.shared is None or self.waiting_off < 0:
            return self.inflight
        return self.shared.total(self.waiting_off)

    def add_waiting(self, k: int) -> None:
        self.inflight += k
        if self.shared is not None and self.waiting_off >= 0:
            self.shared.add(self.waiting_off, k)

    def matches(self, key: bytes) -> bool:
        if self.everything:
            return True
        if not wire.is_under(key, self.zone):
            return False
        # CoreDNS's isAllowedDomain: FROM itself is forwarded even when excepted
        return key == self.zone or not any(wire.is_under(key, z) for z in self.excepts)

    def order(self, health: list[bool] | None, now: float) -> list[UpstreamState]:
        n = len(self.ups)
        if n == 1:
            return list(self.ups)   # healthy or not, it is the only one to try
        if self.conf.policy == "random":
            ups = random.sample(self.ups, n) if n > 1 else list(self.ups)
        elif self.conf.policy == "round_robin":
            self.rr = (self.rr + 1) % n
            ups = self.ups[self.rr:] + self.ups[:self.rr]
        else:
            ups = list(self.ups)
        good = [u for u in ups if u.down_until <= now
                and (health is None or u.flag >= len(health) or health[u.flag])]
        return good or ups          # all down: try them all


def _client_tls(conf: ForwardConf) -> ssl.SSLContext:
    """``tls [CERT [KEY [CA]]]`` as CoreDNS reads it (1 arg: the CA)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    args = conf.tls
    if len(args) == 1:
        ctx.load_verify_locations(args[0])
    else:
        if len(args) == 3:
            ctx.load_verify_locations(args[2])
        else:
            ctx.load_default_certs()
        if len(args) >= 2:
            ctx.load_cert_chain(args[0], args[1])
    if not conf.tls_servername:
        ctx.check_hostname = False
    return ctx


# -- one upstream resolution ------------------------------------------------------


class Flight:
    """Identical queries waiting for one upstream answer."""

    __slots__ = (
        "attempt",
        "block",
        "conn",
        "cur",
        "error",
        "fkey",
        "fresh",
        "group",
        "order",
        "q",
        "qid",
        "sent",
        "sent_name",
        "sock",
        "stale",
        "started",
        "tcp",
        "waiters",
    )

    def __init__(self, fkey: tuple[Any, ...], block: BlockForwarder, group: ForwardGroup,
                 q: wire.Query, order: list[UpstreamState], tcp: bool) -> None:
        self.fkey = fkey
        self.block = block
        self.group = group
        self.q = q
        self.waiters: list[tuple[wire.Query, Reply, bool]] = []
        self.order = order
        self.cur: UpstreamState | None = None
        self.qid = 0
        self.sock: socket.socket | None = None
        self.conn: StreamConn | None = None     # the TCP/TLS connection of this attempt
        self.fresh = False                      # retried once after a reused one broke
        self.sent_name: bytes | None = None     # 0x20: the spelling the UDP attempt sent
        self.attempt = 0
        self.tcp = tcp
        self.stale: bytes | None = None     # serve_stale verify: the fallback body
        self.started = time.monotonic()
        self.sent = self.started            # when the current attempt went upstream
        self.error = ""                     # the last upstream failure (for ``errors``)


class Forwarder:
    """A worker's upstream I/O: sockets, timers, in-flight queries, TCP/TLS pool."""

    def __init__(self, cache: Any = None, health: dict[int, list[bool]] | None = None) -> None:
        self.cache = cache
        self.health = health if health is not None else {}
        self.flights: dict[tuple[Any, ...], Flight] = {}
        self.by_fd: dict[int, tuple[socket.socket, UpstreamState, dict[int, Flight]]] = {}
        self.timers: list[tuple[float, int, Flight, int]] = []
        self._seq = itertools.count()
        # TCP/TLS connections by descriptor: (connection, its upstream, its directive)
        self.streams: dict[int, tuple[StreamConn, UpstreamState, ForwardConf]] = {}
        self.waiting = 0                # client queries waiting on upstreams (all blocks)
        # entries this worker stored, for prefetch: [inserted, ttl, block, query, our own gets]
        self.prefetch: dict[tuple[Any, ...], list[Any]] = {}
        self.next_scan = 0.0
        self.closed = False
        self.counters: ForwardCounters | None = None     # set when prometheus is on
        self.shared: SharedWaiting | None = None         # max_concurrent across workers
        # (block, query, rcode, text) of an error answered to a client (the errors plugin)
        self.on_error: Callable[[int, wire.Query, int, str], None] | None = None
        self.stats = {"upstream_udp": 0, "upstream_tcp": 0, "ignored": 0, "timeouts": 0,
                      "servfail": 0, "coalesced": 0, "stale": 0, "prefetch": 0}

    # -- worker hooks ------------------------------------------------------------

    def fds(self) -> list[Any]:
        """What the worker loop polls: UDP sockets (readable) and TCP/TLS connections
        (``(fd, events)``: writable too while connecting or with bytes queued)."""
        out: list[Any] = list(self.by_fd)
        out.extend(c.poll for c, _, _ in self.streams.values())
        return out

    def on_fd(self, fd: int, events: int) -> None:
        entry = self.by_fd.get(fd)
        if entry is not None:
            self._udp_readable(*entry)
            return
        st = self.streams.get(fd)
        if st is not None:
            st[0].step()

    def on_timer(self) -> None:
        if not self.timers and not self.prefetch and not self.streams:
            return
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, fl, attempt = heapq.heappop(self.timers)
            if fl.attempt == attempt and self.flights.get(fl.fkey) is fl:
                self.stats["timeouts"] += 1
                if self.counters is not None and fl.cur is not None:
                    self.counters.timeout(fl.cur.ctr)
                up = fl.cur
                conn = fl.conn
                proto = "udp" if conn is None else "tcp"
                local = local_addr(fl.sock) if conn is None else conn.local()
                if conn is not None and conn.last_answer < fl.sent:
                    conn.retire = True      # no answer since it was sent: no new queries
                self._failed(fl, op_error("read", proto, up.addr if up else ("?", 0),
                                          "i/o timeout", local))
        if self.streams:
            self._sweep_streams(now)
        if self.prefetch and now >= self.next_scan:
            self.next_scan = now + PREFETCH_SCAN
            self._prefetch_scan()

    def owns(self, fd: int) -> bool:
        """Whether ``fd`` is one of this forwarder's sockets."""
        return fd in self.by_fd or fd in self.streams

    @property
    def idle(self) -> bool:
        """No query in flight and no finished exchange waiting to be handled."""
        return not self.flights

    def close(self) -> None:
        self.closed = True
        for sock, _, _ in list(self.by_fd.values()):
            sock.close()
        self.by_fd.clear()
        for c, _, _ in list(self.streams.values()):
            c.close()
        self.streams.clear()

    # -- starting and answering flights --------------------------------------------

    def start(self, fl: Flight) -> None:
        self.flights[fl.fkey] = fl
        self._next(fl)

    def _next(self, fl: Flight) -> None:
        """Send ``fl`` to its next upstream, or fail it when none is left."""
        if not fl.order:
            self._give_up(fl)
            return
        up = fl.order.pop(0)
        fl.cur = up
        fl.attempt += 1
        conf = fl.group.conf
        if up.up.scheme == "tls" or conf.force_tcp or (fl.tcp and not conf.prefer_udp):
            self._send_tcp(fl, up)
        else:
            self._send_udp(fl, up)

    def _query(self, fl: Flight, qid: int) -> bytes:
        q = fl.q
        flags = (0x0100 if q.rd else 0) | (0x0010 if q.cd else 0)
        name = fl.sent_name if fl.sent_name is not None else q.qname_wire
        return (struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1) + name
                + struct.pack("!HH", q.qtype, q.qclass) + _OPT
                + (b"\x80\x00" if q.do else b"\x00\x00") + b"\x00\x00")

    def _send_udp(self, fl: Flight, up: UpstreamState) -> None:
        if up.sock is None or (up.uses >= USES_PER_SOCKET
                               and len(self.by_fd) < limits.UPSTREAM_UDP_SOCKETS):
            self._retire(up)
            fam = socket.AF_INET6 if ":" in up.up.host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                if fl.group.conf.source_address:
                    s.bind((fl.group.conf.source_address, 0))
                s.connect(up.addr)
            except OSError as exc:
                s.close()
                self._failed(fl, op_error("dial", "udp", up.addr, reason(exc, "connect")))
                return
            up.sock, up.uses = s, 0
            self.by_fd[s.fileno()] = (s, up, {})
        s = up.sock
        pending = self.by_fd[s.fileno()][2]
        qid = _IDS.getrandbits(16)
        while qid in pending:
            qid = _IDS.getrandbits(16)
        fl.sent_name = caps_name(fl.q.key) if fl.group.conf.use_caps_for_id else None
        try:
            s.send(self._query(fl, qid))
        except OSError as exc:
            self._failed(fl, op_error("write", "udp", up.addr, reason(exc, "write"),
                                      local_addr(s)))
            return
        up.uses += 1
        fl.sent = time.monotonic()
        if self.counters is not None:
            self.counters.request(up.ctr)
        pending[qid] = fl
        fl.qid, fl.sock = qid, s
        self.stats["upstream_udp"] += 1
        heapq.heappush(self.timers, (time.monotonic() + fl.group.conf.read_timeout,
                                     next(self._seq), fl, fl.attempt))

    def _retire(self, up: UpstreamState) -> None:
        """Stop using ``up``'s socket; it closes once its pending queries are done."""
        s = up.sock
        up.sock = None
        if s is not None:
            self._release(s)

    def _release(self, s: socket.socket) -> None:
        """Close ``s`` if it is retired and nothing is pending on it any more."""
        entry = self.by_fd.get(s.fileno())
        if entry is None or entry[0] is not s:
            return
        _, up, pending = entry
        if s is not up.sock and not pending:
            del self.by_fd[s.fileno()]
            s.close()

    def _udp_readable(self, s: socket.socket, up: UpstreamState, pending: dict[int, Flight]) -> None:
        while True:
            try:
                data = s.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:          # ICMP port unreachable: the upstream is not there
                for fl in list(pending.values()):
                    if self.flights.get(fl.fkey) is fl:
                        self._failed(fl, op_error("read", "udp", up.addr, reason(exc, "read"),
                                                  local_addr(s)))
                pending.clear()
                break
            if len(data) < 12:
                continue
            got = pending.get((data[0] << 8) | data[1])
            if got is None or not self._matches(got, data):
                self.stats["ignored"] += 1
                continue
            del pending[got.qid]
            got.sock = None
            if self.flights.get(got.fkey) is got:
                self._answered(got, data, False)
        self._release(s)

    @staticmethod
    def _matches(fl: Flight, data: bytes) -> bool:
        """A response (QR, QUERY) to exactly the question asked."""
        if not data[2] & 0x80 or data[2] & 0x78 or data[4:6] != b"\x00\x01":
            return False
        key = fl.q.key
        end = 12 + len(key)
        if fl.sent_name is not None:                # 0x20: the case must come back as sent
            return (data[12:end] == fl.sent_name
                    and data[end:end + 4] == struct.pack("!HH", fl.q.qtype, fl.q.qclass))
        return (data[12:end].lower() == key
                and data[end:end + 4] == struct.pack("!HH", fl.q.qtype, fl.q.qclass))

    def _answered(self, fl: Flight, data: bytes, via_tcp: bool, counted: bool = False) -> None:
        """``counted``: the C forwarder counted this response already."""
        up = fl.cur
        assert up is not None
        if self.counters is not None and not counted:
            self.counters.response(up.ctr, data[3] & 0xF, time.monotonic() - fl.sent)
        if data[2] & 0x02 and not via_tcp:           # TC: the same upstream over TCP
            fl.attempt += 1
            self._send_tcp(fl, up)
            return
        rcode = data[3] & 0xF
        up.fails = 0
        up.down_until = 0.0
        if fl.group.conf.failover_rcodes and fl.order and \
                _RCODE_NAMES.get(rcode) in fl.group.conf.failover_rcodes:
            self._next(fl)
            return
        try:
            body = wire.body_from_response(data)
        except FormatError:
            if _well_formed(data):          # more records than a stored body holds: relay it
                self._relay(fl, data)
                return
            self._failed(fl, f"dns: malformed response from {hostport(up.addr)}")
            return
        self._finish(fl, body, store=True)

    def _relay(self, fl: Flight, data: bytes) -> None:
        """Pass an upstream answer on as it came (not cached): each waiter's ID and
        question spelling; a UDP client it does not fit gets it truncated (TC, as
        CoreDNS and Unbound relay it) and retries over TCP."""
        self.flights.pop(fl.fkey, None)
        end = 12 + len(fl.q.key)
        for q, reply, tcp in fl.waiters:
            msg = struct.pack("!H", q.id) + data[2:12] + q.qname_wire + data[end:]
            if len(msg) > client_limit(q, tcp):
                cut = bytearray(wire.response_with_rcode(q, data[3] & 0xF))
                cut[2] |= 0x02 | (data[2] & 0x04)         # TC, and the upstream's AA
                cut[3] |= data[3] & 0x80                  # RA
                msg = bytes(cut)
            reply(msg)
        fl.group.add_waiting(-len(fl.waiters))
        self.waiting -= len(fl.waiters)

    def _failed(self, fl: Flight, why: str) -> None:
        up = fl.cur
        if up is not None:
            up.fails += 1
            mf = fl.group.conf.max_fails
            if mf and up.fails >= mf:
                up.down_until = time.monotonic() + max(1.0, 2 * fl.group.conf.health_check)
            log.debug("upstream %s: %s", up.up, why)
        fl.error = why
        if fl.conn is not None:
            fl.conn.forget(fl.qid)
            self._maybe_close(fl.conn)
            fl.conn = None
        s = fl.sock
        if s is not None:
            entry = self.by_fd.get(s.fileno())
            if entry is not None and entry[0] is s:
                entry[2].pop(fl.qid, None)
            fl.sock = None
            self._release(s)              # a retired socket whose last query this was
        self._next(fl)

    def _give_up(self, fl: Flight) -> None:
        self.stats["servfail"] += 1
        if fl.stale is not None:
            self._finish(fl, fl.stale, store=False, age=fl.block.stale_age)
            return
        self.flights.pop(fl.fkey, None)
        bf = fl.block
        cc = bf.cache_conf
        if bf.policy is not None and cc is not None and self.cache is not None \
                and not bf.policy.stale_window and fl.q.qclass == 1 \
                and bf.policy.covers(fl.q.key) and cc.servfail_ttl >= 1:
            body = wire.body_from_response(wire.response_with_rcode(fl.q, wire.SERVFAIL))
            self.cache.put(fl.q.key, fl.q.qtype, 1, bf.cache_flags(fl.q), body,
                           int(cc.servfail_ttl), "servfail")
        for q, reply, _tcp in fl.waiters:
            reply(wire.response_with_rcode(q, wire.SERVFAIL))
            if self.on_error is not None:
                self.on_error(bf.block, q, wire.SERVFAIL, fl.error or "no healthy proxies")
        fl.group.add_waiting(-len(fl.waiters))
        self.waiting -= len(fl.waiters)

    def _finish(self, fl: Flight, body: bytes, *, store: bool, age: int = 0) -> None:
        self.flights.pop(fl.fkey, None)
        bf = fl.block
        q0 = fl.q
        if store and bf.policy is not None and self.cache is not None and q0.qclass == 1:
            kind, ttl, body = bf.policy.decide(q0.key, body)
            if kind is not None:
                self.cache.put(q0.key, q0.qtype, 1, bf.cache_flags(q0), body, ttl, kind)
                if bf.cache_conf is not None and bf.cache_conf.prefetch_amount and \
                        kind == "success" and \
                        len(self.prefetch) < PREFETCH_TRACK:
                    self.prefetch[fl.fkey] = [self._cache_now(), ttl, bf, q0, 0]
        for q, reply, tcp in fl.waiters:
            try:
                reply(wire.response_from_body(q, body, age, client_limit(q, tcp)))
            except (EncodeError, FormatError):
                reply(wire.response_with_rcode(q, wire.SERVFAIL))
        fl.group.add_waiting(-len(fl.waiters))
        self.waiting -= len(fl.waiters)

    @staticmethod
    def _cache_now() -> int:
        from fastdns._shmcache import now
        return now()

    # -- TCP / TLS (non-blocking connections, fastdns.worker.streams) -------------------

    def _send_tcp(self, fl: Flight, up: UpstreamState) -> None:
        conf = fl.group.conf
        conn = self._stream(fl, up, conf)
        if conn is None:
            return                                          # _failed said why
        qid = _IDS.getrandbits(16)
        while qid in conn.pending:
            qid = _IDS.getrandbits(16)
        fl.qid = qid
        fl.conn = conn
        fl.sent_name = None                         # no 0x20 over TCP
        self.stats["upstream_tcp"] += 1
        fl.sent = time.monotonic()
        if self.counters is not None:
            self.counters.request(up.ctr)
        conn.send(qid, self._query(fl, qid), fl)
        # one deadline for everything: connecting, the TLS handshake, queueing, and
        # frames that are not the answer
        deadline = fl.sent + conf.read_timeout + limits.UPSTREAM_TCP_SLACK
        heapq.heappush(self.timers, (deadline, next(self._seq), fl, fl.attempt))

    def _stream(self, fl: Flight, up: UpstreamState, conf: ForwardConf) -> StreamConn | None:
        """The connection to ``up`` a new query goes on: the least busy open one, or a
        new one once every one has TCP_SPREAD in flight (up to TCP_CONNS)."""
        now = time.monotonic()
        live = []
        for c in list(up.conns):
            if not c.retire and conf.max_age and now - c.opened >= conf.max_age:
                c.retire = True                             # max_age: no new queries
                self._maybe_close(c)
            if not c.closed and not c.full:
                live.append(c)
        best = min(live, key=lambda c: len(c.pending), default=None)
        opened = sum(1 for c in up.conns if not c.closed and not c.retire)
        if best is not None and (len(best.pending) < TCP_SPREAD or opened >= TCP_CONNS):
            return best
        if opened < TCP_CONNS:
            try:
                conn = StreamConn(up.addr, fl.group.tls if up.up.scheme == "tls" else None,
                                  conf.tls_servername or up.up.host,
                                  self._stream_frame, self._stream_closed,
                                  source=conf.source_address)
            except OSError as exc:
                if best is not None:
                    return best
                self._failed(fl, op_error("dial", "tcp", up.addr, reason(exc, "connect")))
                return None
            up.conns.append(conn)
            self.streams[conn.fd] = (conn, up, conf)
            return conn
        if best is not None:
            return best
        self._failed(fl, op_error("dial", "tcp", up.addr, "too many exchanges queued"))
        return None

    def _stream_frame(self, conn: StreamConn, data: bytes) -> None:
        qid = struct.unpack_from("!H", data)[0]
        fl = conn.pending.get(qid)
        if fl is None or fl.conn is not conn or self.flights.get(fl.fkey) is not fl \
                or not self._matches(fl, data):
            self.stats["ignored"] += 1                      # not an answer we wait for
            return
        del conn.pending[qid]
        conn.answered += 1
        conn.last_answer = time.monotonic()
        fl.conn = None
        self._maybe_close(conn)
        self._answered(fl, data, True)

    def _stream_closed(self, conn: StreamConn, why: str) -> None:
        """A connection broke: each of its queries goes once more to the same upstream
        on a new connection if this one had answered before (a stale idle one), else
        on to the next upstream."""
        entry = self.streams.pop(conn.fd, None)
        if entry is not None and conn in entry[1].conns:
            entry[1].conns.remove(conn)
        for fl in list(conn.pending.values()):
            if fl.conn is not conn or self.flights.get(fl.fkey) is not fl:
                continue
            fl.conn = None
            if conn.answered and not fl.fresh and fl.cur is not None:
                fl.fresh = True
                fl.order.insert(0, fl.cur)                  # the same upstream again
                self._next(fl)
            else:
                self._failed(fl, why)
        conn.pending.clear()

    def _maybe_close(self, conn: StreamConn) -> None:
        """Close an idle connection that is retiring, or one more than ``max_idle_conns``."""
        if conn.pending or conn.closed:
            return
        entry = self.streams.get(conn.fd)
        if entry is None:
            return
        _, up, conf = entry
        idle = sum(1 for c in up.conns if not c.pending and not c.closed)
        if conn.retire or (conf.max_idle_conns and idle > conf.max_idle_conns):
            self._drop_stream(conn)

    def _drop_stream(self, conn: StreamConn) -> None:
        entry = self.streams.pop(conn.fd, None)
        if entry is not None and conn in entry[1].conns:
            entry[1].conns.remove(conn)
        conn.close()

    def _sweep_streams(self, now: float) -> None:
        """Idle connections past ``expire`` or ``max_age`` close."""
        for conn, _, conf in list(self.streams.values()):
            if not conn.pending and (conn.retire or now - conn.last >= conf.expire
                                     or (conf.max_age and now - conn.opened >= conf.max_age)):
                self._drop_stream(conn)

    # -- prefetch ---------------------------------------------------------------------

    def _prefetch_scan(self) -> None:
        if self.cache is None:
            self.prefetch.clear()
            return
        now = self._cache_now()
        for fkey, track in list(self.prefetch.items()):
            inserted, ttl, bf, q, _ = track
            remaining = inserted + ttl - now
            if remaining <= 0:
                del self.prefetch[fkey]
                continue
            c = bf.cache_conf
            if remaining > -(-c.prefetch_percentage * ttl // 100) or fkey in self.flights:
                continue
            e = self.cache.get(q.key, q.qtype, 1, bf.cache_flags(q))
            if e is None or e.inserted != inserted:
                del self.prefetch[fkey]
                continue
            track[4] += 1                   # get() counts itself as a hit
            if e.hits - track[4] >= c.prefetch_amount:
                del self.prefetch[fkey]
                self.stats["prefetch"] += 1
                bf.refresh(q, fkey)


#: upstream query IDs come from the kernel's CSPRNG (getrandom), not the Mersenne
#: Twister of ``random``, whose state can be recovered from outputs it gave
_IDS = random.SystemRandom()
def caps_name(key: bytes) -> bytes:
    """``key`` (a lower-case wire name) with every letter's case drawn at random from
    the kernel's CSPRNG (0x20, draft-vixie-dnsext-dns0x20)."""
    out = bytearray(key)
    bits = _IDS.getrandbits(len(key))
    i = 0
    while i < len(out) and out[i]:
        for k in range(i + 1, i + 1 + out[i]):
            if 97 <= out[k] <= 122 and (bits >> k) & 1:
                out[k] -= 32
        i += 1 + out[i]
    return bytes(out)


_RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
                5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
                10: "NOTZONE"}


# -- per block -------------------------------------------------------------------------


class BlockForwarder:
    """The ``forward`` (+ ``cache``) of one server block: a miss-handler resolver."""

    plugin = "forward"
    caches_itself = True        # its own fill: prefetch, serve_stale, servfail caching
    takes_hint = True           # goes on from an answer the C forwarder got (TC, too big)

    def __init__(self, fwd: Forwarder, block: int, confs: tuple[ForwardConf, ...],
                 cache_conf: CacheConf | None, slot0: int = -1) -> None:
        """``slot0``: the counter slot of the block's first upstream (see
        :func:`fastdns.metrics.forward_upstreams`); -1: not counted."""
        self.fwd = fwd
        self.block = block
        self.groups: list[ForwardGroup] = []
        flag = 0
        for c in confs:
            g = ForwardGroup(c, flag, slot0 + flag if slot0 >= 0 else -1)
            g.shared = fwd.shared
            self.groups.append(g)
            flag += len(c.to)
        self.cache_conf = cache_conf
        self.policy = CachePolicy(cache_conf) if cache_conf is not None else None
        self.cache_ns = 0               # the block's namespace in the shared cache (attach sets it)
        # stale answers: TTL 0, or (keepttl) the TTLs they were stored with, as CoreDNS
        self.stale_age = 0 if cache_conf is not None and cache_conf.keepttl else 1 << 30

    def cache_flags(self, q: wire.Query) -> int:
        """The shared cache's key flags byte for ``q`` in this block (as the engine's)."""
        return (1 if q.do else 0) | (self.cache_ns << 1)

    def _group(self, key: bytes) -> ForwardGroup | None:
        for g in self.groups:
            if g.matches(key):
                return g
        return None

    def resolve(self, q: wire.Query, packet: bytes, reply: Reply, tcp: bool,
                hint: tuple[Any, ...] | None = None) -> bool:
        """Forward ``q`` (answer later through ``reply``); False: not ours.
        ``hint``: ``("answer", response, group, upstream)`` from the C forwarder, which
        asked upstream already and got an answer with TC or too many records: go on
        from that answer (over TCP to the same upstream, or relayed)."""
        if q.opcode != 0:
            return False
        key = q.key
        if hint is not None and 0 <= hint[2] < len(self.groups) \
                and 0 <= hint[3] < len(self.groups[hint[2]].ups):
            g: ForwardGroup | None = self.groups[hint[2]]
        else:
            g, hint = self._group(key), None
        if g is None:
            return False
        fwd = self.fwd
        fkey = (self.block, key, q.qtype, q.qclass, q.do)
        stale = None
        pol = self.policy
        if pol is not None and pol.stale_window and fwd.cache is not None and q.qclass == 1:
            e = fwd.cache.get(key, q.qtype, 1, self.cache_flags(q), stale_window=pol.stale_window)
            if e is not None and e.stale:
                fwd.stats["stale"] += 1
                if self.cache_conf is not None and self.cache_conf.serve_stale_mode == "immediate":
                    reply(wire.response_from_body(q, e.value, self.stale_age,
                                                  client_limit(q, tcp)))
                    self.refresh(q, fkey)
                    return True
                stale = e.value
        fl = fwd.flights.get(fkey)
        if fl is not None:
            fwd.stats["coalesced"] += 1
        elif g.conf.max_concurrent and g.waiting_all() >= g.conf.max_concurrent:
            if g.shared is not None and g.waiting_off >= 0:
                g.shared.rejected(g.waiting_off)
            reply(wire.response_with_rcode(q, wire.REFUSED))
            if fwd.on_error is not None:
                fwd.on_error(self.block, q, wire.REFUSED,
                             f"concurrent queries exceeded maximum {g.conf.max_concurrent}")
            return True
        if fwd.waiting >= limits.UPSTREAM_MAX_PENDING:
            reply(wire.response_with_rcode(q, wire.REFUSED))
            if fwd.on_error is not None:
                fwd.on_error(self.block, q, wire.REFUSED,
                             f"queries waiting on upstreams exceeded the worker's "
                             f"{limits.UPSTREAM_MAX_PENDING}")
            return True
        g.add_waiting(1)
        fwd.waiting += 1
        if fl is not None:
            fl.waiters.append((q, reply, tcp))
            return True
        fl = Flight(fkey, self, g, q, g.order(fwd.health.get(self.block), time.monotonic()), tcp)
        fl.stale = stale
        fl.waiters.append((q, reply, tcp))
        if hint is not None:
            up = g.ups[hint[3]]
            fl.order = [u for u in fl.order if u is not up]
            fl.cur, fl.attempt = up, 1
            fwd.flights[fkey] = fl
            fwd._answered(fl, hint[1], False, counted=True)
            return True
        fwd.start(fl)
        return True

    def refresh(self, q: wire.Query, fkey: tuple[Any, ...]) -> None:
        """Ask upstream again for ``q`` with nobody waiting (serve_stale, prefetch)."""
        if fkey in self.fwd.flights:
            return
        g = self._group(q.key)
        if g is None:
            return
        fl = Flight(fkey, self, g, q, g.order(self.fwd.health.get(self.block), time.monotonic()),
                    False)
        self.fwd.start(fl)

