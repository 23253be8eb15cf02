"""A scripted UDP DNS server for tests of fastdns-bench (loopback only).

It drops every ``drop_every``-th query, answers every ``delay_every``-th of
the others ``delay`` seconds late, answers the rest at once, and counts all
of it, so a test can check the client's counts against the server's.
``answer(qname, qtype)`` chooses the reply: ``(rcode, has_answer)``.
Every received question is logged in ``log`` as ``(qname, qtype)``.
"""

from __future__ import annotations

import heapq
import selectors
import socket
import threading
import time
from typing import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

AnswerFn = Callable[[str, str], tuple[int, bool]]


def positive(qname: str, qtype: str) -> tuple[int, bool]:
    """Every name exists with an A record; other types get NODATA."""
    return dns.rcode.NOERROR, qtype == "A"


class ScriptedServer:
    """Start with ``with ScriptedServer(...) as srv:``; ``srv.port`` is its port."""

    def __init__(self, answer: AnswerFn = positive, drop_every: int = 0, delay_every: int = 0,
                 delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.answer = answer
        self.drop_every = drop_every
        self.delay_every = delay_every
        self.delay = delay
        self.received = self.dropped = self.delayed = self.answered = 0
        self.log: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> "ScriptedServer":
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
        """``received, dropped, delayed, answered`` so far."""
        with self._lock:
            return {"received": self.received, "dropped": self.dropped,
                    "delayed": self.delayed, "answered": self.answered}

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

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        pending: list[tuple[float, int, bytes, tuple]] = []
        seq = 0
        while not self._stop.is_set():
            wait = 0.05 if not pending else max(0.0, min(0.05, pending[0][0] - time.monotonic()))
            sel.select(wait)
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, wire, addr = heapq.heappop(pending)
                self.sock.sendto(wire, addr)
            while True:
                try:
                    data, addr = self.sock.recvfrom(4096)
                except BlockingIOError:
                    break
                with self._lock:
                    self.received += 1
                    n = self.received
                try:
                    q = dns.message.from_wire(data)
                except Exception:
                    continue
                if self.drop_every and n % self.drop_every == 0:
                    with self._lock:
                        self.dropped += 1
                    continue
                wire = self._reply(q)
                if self.delay_every and n % self.delay_every == 0:
                    with self._lock:
                        self.delayed += 1
                    seq += 1
                    heapq.heappush(pending, (now + self.delay, seq, wire, addr))
                else:
                    with self._lock:
                        self.answered += 1
                    self.sock.sendto(wire, addr)
        sel.close()
