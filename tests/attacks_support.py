"""Queries in bulk over UDP for the attack and limit tests."""

from __future__ import annotations

import select
import socket
import time

import dns.message


def ask_all(host: str, port: int, names: list[str], timeout: float = 60.0,
            pace: int = 200) -> dict[str, dns.message.Message]:
    """Send one A query per name over UDP (``pace`` per burst), collect the answers
    until all came back or ``timeout``.  Returns name → answer (missing: lost)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    by_id: dict[int, str] = {}
    got: dict[str, dns.message.Message] = {}
    try:
        for i, name in enumerate(names):
            q = dns.message.make_query(name, "A")
            q.id = i & 0xFFFF
            by_id[q.id] = name
            s.sendto(q.to_wire(), (host, port))
            if i % pace == pace - 1:
                _drain(s, by_id, got, 0.01)
        deadline = time.monotonic() + timeout
        while len(got) < len(names) and time.monotonic() < deadline:
            _drain(s, by_id, got, 0.2)
    finally:
        s.close()
    return got


def _drain(s: socket.socket, by_id: dict[int, str], got: dict[str, dns.message.Message],
           wait: float) -> None:
    p = select.poll()
    p.register(s, select.POLLIN)
    if not p.poll(wait * 1000):
        return
    while True:
        try:
            data = s.recv(65535)
        except BlockingIOError:
            return
        r = dns.message.from_wire(data)
        name = by_id.get(r.id)
        if name is not None and r.question and r.question[0].name.to_text().lower() == name:
            got[name] = r
