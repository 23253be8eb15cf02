"""A scripted UDP or TCP DNS server for tests of fastdns-bench (loopback only).

It drops every ``drop_every``-th query, answers every ``delay_every``-th of
the others ``delay`` seconds late, answers the rest at once, and counts all
of it, so a test can check the client's counts against the server's.
``answer(qname, qtype)`` chooses the reply: ``(rcode, has_answer)``.
Every received question is logged in ``log`` as ``(qname, qtype)``.

``max_rate=R`` (UDP) models a server that saturates at R queries per second:
a token bucket of ``R * burst`` tokens refilled at R per second, charged at
each query's kernel receive time (SO_TIMESTAMPNS, so a late Python thread
does not make bursts), passes the queries within the rate; the others are
dropped (``over_rate="drop"``, counted in ``dropped`` and ``over_rate``) or
answered ``delay`` seconds late (``over_rate="delay"``, counted in
``delayed`` and ``over_rate``).

With ``tcp=True`` it listens on TCP instead (RFC 7766 framing, answers in
completion order); ``close_every=K`` closes a connection, without answering,
on the K-th query it reads from that connection (counted as ``closed``): it
shuts down its sending side, so the client reads every answer sent before
and then EOF, and discards whatever the client wrote after (not counted as
received) until the client closes.  ``accepted`` counts connections.
"""

from __future__ import annotations

import heapq
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)    # Linux; SCM_TIMESTAMPNS is the same
AnswerFn = Callable[[str, str], tuple[int, bool]]


def positive(qname: str, qtype: str) -> tuple[int, bool]:
    """Every name exists with an A record; other types get NODATA."""
    return dns.rcode.NOERROR, qtype == "A"


class ScriptedServer:
    """Start with ``with ScriptedServer(...) as srv:``; ``srv.port`` is its port."""

    def __init__(self, answer: AnswerFn = positive, drop_every: int = 0, delay_every: int = 0,
                 delay: float = 0.0, host: str = "127.0.0.1", port: int = 0, tcp: bool = False,
                 close_every: int = 0, max_rate: float = 0.0, over_rate: str = "drop",
                 burst: float = 0.1) -> None:
        if over_rate not in ("drop", "delay"):
            raise ValueError("over_rate must be 'drop' or 'delay'")
        self.answer = answer
        self.drop_every = drop_every
        self.delay_every = delay_every
        self.delay = delay
        self.tcp = tcp
        self.close_every = close_every
        self.max_rate = max_rate
        self.over_rate_action = over_rate
        self._cap = max(1.0, max_rate * burst)
        self._tokens = self._cap
        self._t_tokens: float | None = None
        self.over_rate = 0
        self.received = self.dropped = self.delayed = self.answered = 0
        self.closed = self.accepted = 0
        self.log: list[tuple[str, str]] = []
        if tcp:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(128)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind((host, port))
            if max_rate:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def counts(self) -> dict[str, int]:
        """``received, dropped, delayed, answered`` (and ``closed, accepted``) so far."""
        with self._lock:
            return {"received": self.received, "dropped": self.dropped,
                    "delayed": self.delayed, "answered": self.answered,
                    "closed": self.closed, "accepted": self.accepted, "over_rate": self.over_rate}

    def _reply(self, q: dns.message.Message) -> bytes:
        qn = q.question[0].name.to_text()
        qt = dns.rdatatype.to_text(q.question[0].rdtype)
        self.log.append((qn, qt))
        rcode, has = self.answer(qn, qt)
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.Rcode(rcode))
        if has and rcode == dns.rcode.NOERROR:
            rd = "192.0.2.1" if qt == "A" else "2001:db8::1" if qt == "AAAA" else None
            if rd is not None:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", qt, rd))
        return r.to_wire()

    def _within_rate(self, t: float) -> bool:
        """Charge one query received at ``t`` to the token bucket."""
        if self._t_tokens is not None:
            self._tokens = min(self._cap, self._tokens + (t - self._t_tokens) * self.max_rate)
        self._t_tokens = t if self._t_tokens is None else max(t, self._t_tokens)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _handle(self, data: bytes, now: float, send: Callable[[bytes], None],
                pending: list, seq: int, t_recv: float | None = None) -> None:
        """Count one query and answer, drop or delay it (``pending``: the delay heap)."""
        with self._lock:
            self.received += 1
            n = self.received
        try:
            q = dns.message.from_wire(data)
        except Exception:
            return
        over = bool(self.max_rate) and not self._within_rate(time.time() if t_recv is None else t_recv)
        if over:
            with self._lock:
                self.over_rate += 1
            if self.over_rate_action == "drop":
                with self._lock:
                    self.dropped += 1
                return
        if self.drop_every and n % self.drop_every == 0:
            with self._lock:
                self.dropped += 1
            return
        wire = self._reply(q)
        if over or (self.delay_every and n % self.delay_every == 0):
            with self._lock:
                self.delayed += 1
            heapq.heappush(pending, (now + self.delay, seq, wire, send))
        else:
            with self._lock:
                self.answered += 1
            send(wire)

    def _serve(self) -> None:
        if self.tcp:
            self._serve_tcp()
            return
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        pending: list[tuple[float, int, bytes, Callable[[bytes], None]]] = []
        seq = 0
        while not self._stop.is_set():
            wait = 0.05 if not pending else max(0.0, min(0.05, pending[0][0] - time.monotonic()))
            sel.select(wait)
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, wire, send = heapq.heappop(pending)
                send(wire)
            while True:
                t_recv = None
                try:
                    if self.max_rate:
                        data, anc, _, addr = self.sock.recvmsg(4096, 64)
                        for level, kind, raw in anc:
                            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                                sec, nsec = struct.unpack("qq", raw[:16])
                                t_recv = sec + nsec / 1e9
                    else:
                        data, addr = self.sock.recvfrom(4096)
                except BlockingIOError:
                    break
                seq += 1
                self._handle(data, now, lambda w, a=addr: self.sock.sendto(w, a), pending, seq, t_recv)
        sel.close()

    def _serve_tcp(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        pending: list = []
        conns: dict[socket.socket, list] = {}      # conn -> [inbuf, queries read, closing]
        seq = 0

        def sender(conn: socket.socket) -> Callable[[bytes], None]:
            def send(wire: bytes) -> None:
                if conn in conns and not conns[conn][2]:
                    try:
                        conn.sendall(len(wire).to_bytes(2, "big") + wire)
                    except OSError:
                        pass
            return send

        def drop(conn: socket.socket) -> None:
            sel.unregister(conn)
            conns.pop(conn, None)
            conn.close()

        while not self._stop.is_set():
            wait = 0.05 if not pending else max(0.0, min(0.05, pending[0][0] - time.monotonic()))
            events = sel.select(wait)
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, wire, send = heapq.heappop(pending)
                send(wire)
            for key, _ in events:
                if key.fileobj is self.sock:
                    try:
                        conn, _ = self.sock.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(True)
                    conns[conn] = [bytearray(), 0, False]
                    sel.register(conn, selectors.EVENT_READ)
                    with self._lock:
                        self.accepted += 1
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                if conn not in conns:
                    continue
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    drop(conn)
                    continue
                st = conns[conn]
                if st[2]:
                    continue            # shut down: drain until the client closes
                st[0] += data
                buf = st[0]
                while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    n = int.from_bytes(buf[:2], "big")
                    msg = bytes(buf[2:2 + n])
                    del buf[:2 + n]
                    st[1] += 1
                    if self.close_every and st[1] % self.close_every == 0:
                        with self._lock:
                            self.received += 1
                            self.closed += 1
                        st[2] = True
                        conn.shutdown(socket.SHUT_WR)
                        break
                    seq += 1
                    self._handle(msg, now, sender(conn), pending, seq)
        for conn in list(conns):
            drop(conn)
        sel.close()
