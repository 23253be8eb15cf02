"""The C forwarder and the C TCP server against hostile peers, for valgrind memcheck.

One process holds a worker's Engine (configured from a real Corefile: cache +
forward, as a worker configures it), a hostile upstream and the clients, all on
loopback.  The upstream answers forwarded queries with, in turn: a good answer,
random bytes, a cut header, a wrong ID, a wrong question, TC, 600 records (more
than a stored body holds: handed to Python), a compression loop, nothing (the
flight times out), an ICMP refusal (a closed port); the "." block has use_caps_for_id (0x20).  Over TCP (force_tcp, and TCP
clients' misses) the same upstream port answers pipelined queries with, in turn: a
good answer, a late one (out of order), a wrong ID, a 5-byte frame, a hang-up, half
a frame, random bytes, nothing.  Clients send valid queries (unique and repeated
names), malformed UDP datagrams, over-long queries, and over TCP: pipelined
frames, cut frames, garbage frames and half-open connections.

    PYTHONMALLOC=malloc valgrind --tool=memcheck python tests/valgrind_forward.py
    (tests/valgrind_forward.sh runs it and judges the log)
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import tempfile
import time

import dns.message
import dns.rrset

from fastdns import limits
from fastdns._loop import Engine
from fastdns._shmcache import SharedCache
from fastdns.config import parse
from fastdns.routing import engine_config
from fastdns.worker.cforward import spec

ROUNDS = int(os.environ.get("ROUNDS", "300"))


def hostile(data: bytes, k: int) -> bytes | None:
    """The k-th kind of answer to the forwarded query ``data``."""
    q = dns.message.from_wire(data)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "192.0.2.9"))
    good = r.to_wire()
    kind = k % 10
    if kind == 0:
        return good
    if kind == 1:
        return os.urandom(random.randint(1, 300))
    if kind == 2:
        return good[:random.randint(1, 11)]
    if kind == 3:
        return struct.pack("!H", (q.id + 1) & 0xFFFF) + good[2:]
    if kind == 4:
        return good[:12] + b"\x01x" + good[14:]        # another name, same length
    if kind == 5:
        tc = bytearray(good[:12 + len(q.question[0].name.to_wire()) + 4])
        tc[2] |= 0x02
        tc[6:12] = b"\x00\x00\x00\x00\x00\x00"
        return bytes(tc)
    if kind == 6:
        big = dns.message.make_response(q)
        big.answer.append(dns.rrset.from_text_list(q.question[0].name, 30, "IN", "A",
                                                   [f"10.{i // 250}.{i % 250}.1" for i in range(600)]))
        return big.to_wire()
    if kind == 7:   # an answer RR whose owner points at itself
        head = good[:12 + len(q.question[0].name.to_wire()) + 4]
        loop_at = len(head)
        return (head[:6] + b"\x00\x01" + head[8:] + struct.pack("!H", 0xC000 | loop_at)
                + b"\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04\xc0\x00\x02\x09")
    if kind == 8:
        return None                                     # never answered: times out
    return good[:2] + os.urandom(len(good) - 2)          # right ID, the rest random


class HostileTcp:
    """The upstream's TCP side, served from the test's loop (no threads)."""

    def __init__(self, port: int) -> None:
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.conns: dict[socket.socket, bytearray] = {}
        self.late: list[tuple[socket.socket, bytes]] = []
        self.k = 0

    def serve(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except BlockingIOError:
                break
            c.setblocking(False)
            self.conns[c] = bytearray()
        for c, out in self.late:
            self._send(c, out)
        self.late.clear()
        for c in list(self.conns):
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._drop(c)
                continue
            buf = self.conns[c]
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                frame = bytes(buf[2:2 + n])
                del buf[:2 + n]
                if not self._answer(c, frame) or c not in self.conns:
                    break

    def _answer(self, c: socket.socket, data: bytes) -> bool:
        try:
            good = hostile(data, 0)
        except Exception:
            return True
        assert good is not None
        kind = self.k % 8
        self.k += 1
        frame = struct.pack("!H", len(good)) + good
        if kind == 0:
            self._send(c, frame)
        elif kind == 1:
            self.late.append((c, frame))                # after later ones: out of order
        elif kind == 2:
            bad = struct.pack("!H", (struct.unpack("!H", good[:2])[0] ^ 0x5A5A)) + good[2:]
            self._send(c, struct.pack("!H", len(bad)) + bad)
        elif kind == 3:
            self._send(c, b"\x00\x05" + os.urandom(5))
        elif kind == 4:
            self._drop(c)
            return False
        elif kind == 5:
            self._send(c, frame[:len(frame) // 2])
        elif kind == 6:
            junk = os.urandom(random.randint(12, 200))
            self._send(c, struct.pack("!H", len(junk)) + junk)
        return True                                     # kind 7: no answer

    def _send(self, c: socket.socket, data: bytes) -> None:
        if c not in self.conns:
            return
        try:
            c.send(data)
        except OSError:
            self._drop(c)

    def _drop(self, c: socket.socket) -> None:
        if self.conns.pop(c, None) is not None:
            c.close()

    def close(self) -> None:
        for c in list(self.conns):
            self._drop(c)
        self.lsock.close()


def main() -> int:
    random.seed(7)
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))
    up.setblocking(False)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()                                      # nothing listens: ICMP refusals
    upport = up.getsockname()[1]
    htcp = HostileTcp(upport)
    text = (f". {{\n cache 30\n forward . 127.0.0.1:{upport} {{\n  use_caps_for_id\n"
            f"  read_timeout 0.3s\n }}\n}}\nrefused.test {{\n forward . 127.0.0.1:{refused_port}\n}}\n"
            f"tcp.test {{\n forward . 127.0.0.1:{upport} {{\n  force_tcp\n  read_timeout 0.3s\n"
            f"  expire 1s\n }}\n}}\n")
    plan = parse(text)
    econf = engine_config(plan)
    shm = SharedCache.create(f"/fastdns-vg-{os.getpid()}", 4096)
    e = Engine()
    try:
        e.attach_cache(shm)
        e.configure(econf)
        e.set_forward_limits(256, 64, 8)
        e.set_tcp_limits(64, 2.0, limits.TCP_MAX_BUFFERED, 16, 64, 0.5)
        for bi, server in enumerate(plan.servers):
            bconf = econf["blocks"][bi]
            stage = next(k for k, st in enumerate(bconf["stages"]) if st["plugin"] == "forward")
            e.set_forward(spec(bi, stage, server.plugins_named("forward"), server.plugin("cache"),
                               bconf, bconf["stages"][stage]["src"], -1))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", port))
        tcp.listen(64)
        tcp.setblocking(False)
        e.set_tcp_listeners([(tcp.fileno(), 0)])
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        conns: list[socket.socket] = []
        misses: list = []
        tcp_misses: list = []
        answered = handed = k = 0
        for rnd in range(ROUNDS):
            for j in range(6):
                zone = ("example", "example", "example", "refused.test", "tcp.test", "tcp.test")[j]
                name = f"n{rnd % 50 if j in (0, 4) else rnd * 6 + j}.{zone}."
                client.sendto(dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", port))
            client.sendto(os.urandom(random.randint(0, 40)), ("127.0.0.1", port))
            client.sendto(dns.message.make_query("long.example.", "A").to_wire() + b"\x00" * 600,
                          ("127.0.0.1", port))
            if rnd % 10 == 0:
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                conns.append(c)
            for c in conns[-5:]:
                frame = dns.message.make_query(f"t{rnd}.example.", "A").to_wire()
                junk = [struct.pack("!H", len(frame)) + frame,
                        struct.pack("!H", 40) + os.urandom(40),
                        struct.pack("!H", 300) + frame,               # cut: a half frame
                        b"\x00"]
                try:
                    c.send(random.choice(junk))
                except OSError:
                    pass
            woke = e.run([(udp.fileno(), 0)], [up.fileno()], 20, misses, tcp_misses)
            htcp.serve()
            if up.fileno() in woke or rnd % 3 == 0:
                while True:
                    try:
                        data, addr = up.recvfrom(65535)
                    except BlockingIOError:
                        break
                    try:
                        out = hostile(data, k)
                    except Exception:               # not a query dnspython reads: ignore
                        out = None
                    k += 1
                    if out is not None:
                        up.sendto(out, addr)
            handed += len(misses) + len(tcp_misses)
            misses.clear()
            tcp_misses.clear()
            e.take_forward_errors()
            while True:
                try:
                    client.recv(65535)
                    answered += 1
                except BlockingIOError:
                    break
            if len(conns) > 20:
                conns.pop(0).close()
        deadline = time.monotonic() + 3
        while e.forward_stats()["flights"] and time.monotonic() < deadline:
            e.run([(udp.fileno(), 0)], [up.fileno()], 50, misses, tcp_misses)
            htcp.serve()
            misses.clear()
            tcp_misses.clear()
        st = e.forward_stats()
        print(f"rounds: {ROUNDS} answered: {answered} to python: {handed} forward: {st}")
        for c in conns:
            c.close()
        e.tcp_close_all()
        htcp.close()
        return 0 if st["sent"] > ROUNDS and st["tcp_sent"] > ROUNDS // 2 \
            and st["flights"] == 0 else 1
    finally:
        del e
        shm.close()
        shm.unlink()


if __name__ == "__main__":
    sys.exit(main())
