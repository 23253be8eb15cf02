"""Forwarding-loop detection (CoreDNS ``loop``): send ourselves a probe, watch it come back.

At start one worker (index 0) sends ``<n1>.<n2>.ZONE. HINFO`` to the block's
own listener.  Every worker knows the probe names: they are derived from the
coordinator's identity (its pid and start time), which all workers share, so
no message is needed.  The probe is counted where it arrives, before the
forwarder (which coalesces identical queries): a probe seen twice by one
worker went out through the forwarders and came back, and with N workers a
loop brings it back to some worker after at most N + 1 hops.  The worker then
tells the coordinator (a ``fatal`` message), which stops with the CoreDNS
error text.  Probing stops once the probe is answered, or after 30 s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import struct
import time
from collections.abc import Callable

from fastdns import wire

__all__ = ["HINFO", "LoopDetector", "probe_names"]

log = logging.getLogger("fastdns.plugin.loop")

HINFO = 13
PROBES = 15                 # probe names (one per attempt)
RETRY = 2.0                 # seconds between attempts
GIVE_UP = 30.0
START_DELAY = 0.3


def _coordinator_secret() -> bytes:
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/stat", "rb") as f:
            start = f.read().rsplit(b")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = b"0"
    return f"{ppid}:{start.decode()}".encode()


def probe_names(zone: str, secret: bytes | None = None) -> list[str]:
    """The probe query names for ``zone`` (the same in every worker of one server)."""
    secret = _coordinator_secret() if secret is None else secret
    out = []
    base = "" if zone == "." else zone.rstrip(".") + "."
    for i in range(PROBES):
        h = hashlib.sha256(secret + b"/" + zone.encode() + b"/" + str(i).encode()).digest()
        a, b = struct.unpack("!QQ", h[:16])
        out.append(f"{a >> 1}.{b >> 1}.{base}")
    return out


class LoopDetector:
    """A miss-handler resolver counting probe arrivals; also sends the probe (worker 0)."""

    def __init__(self, zone: str, target: tuple[str, int], on_loop: Callable[[str], None],
                 send: bool, secret: bytes | None = None) -> None:
        self.zone = zone
        self.target = target
        self.names = probe_names(zone, secret)
        self.keys = {wire.name_from_text(n): n for n in self.names}
        self.seen: dict[bytes, int] = {}
        self.on_loop = on_loop
        self.sending = send
        self.started = time.monotonic()
        self.next_send = self.started + START_DELAY
        self.attempt = 0
        self.sock: socket.socket | None = None
        self.fired = False

    def resolve(self, q: wire.Query, packet: bytes, reply: Callable[[bytes], None],
                tcp: bool) -> bool:
        if q.qtype != HINFO or q.key not in self.keys:
            return False
        n = self.seen[q.key] = self.seen.get(q.key, 0) + 1
        if n >= 2 and not self.fired:
            self.fired = True
            host, port = self.target
            msg = (f'Loop (-> {host}:{port}) detected for zone "{self.zone}", see '
                   f'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO {self.keys[q.key]}"')
            log.error("%s", msg)
            self.on_loop(msg)
        return False                # the forwarder takes it from here

    def fds(self) -> list[int]:
        return [self.sock.fileno()] if self.sock is not None else []

    def on_fd(self, fd: int) -> bool:
        """Handle readiness of our socket; True if ``fd`` was ours."""
        if self.sock is None or fd != self.sock.fileno():
            return False
        try:
            data = self.sock.recv(4096)
        except OSError:
            return True
        if len(data) >= 12 and data[2] & 0x80:
            self._stop()                # answered: no loop right now; never probe again
        return True

    def on_timer(self) -> None:
        if not self.sending:
            return
        now = time.monotonic()
        if now - self.started > GIVE_UP or self.attempt >= PROBES:
            self._stop()
            return
        if now < self.next_send:
            return
        self.next_send = now + RETRY
        name = self.names[self.attempt]
        self.attempt += 1
        if self.sock is None:
            host = self.target[0]
            self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                      socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        query = (struct.pack("!HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0)
                 + wire.name_from_text(name) + struct.pack("!HH", HINFO, 1))
        try:
            self.sock.sendto(query, self.target)
        except OSError:
            pass

    def _stop(self) -> None:
        self.sending = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None
