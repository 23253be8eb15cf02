"""Stub upstream DNS servers on loopback for tests: normal, slow, dead, lying, TC, DoT.

>>> with StubUpstream() as up:              # doctest: +SKIP
...     up.address                           # ('127.0.0.1', 40123)
...     up.count("www.example.")             # queries seen for a name
...     up.arrived("www.example.")           # (monotonic) times they came in

``count``/``log`` record a query when the stub handles it (for ``slow``, after
its delay); ``arrived``/``arrivals`` record it when it comes in, so a test can
tell which upstream was asked first, or that a query is still unanswered.

Answers are built with dnspython.  Default zone content (any name):

* ``A`` → ``192.0.2.1`` (TTL ``ttl``), ``AAAA`` → ``2001:db8::1``;
* names whose first label starts with ``nx`` → NXDOMAIN with an SOA in the
  authority section (SOA TTL ``soa_ttl``, minimum ``soa_minimum``);
* names whose first label starts with ``nodata`` → NOERROR, no answer, SOA;
* names whose first label starts with ``fail`` → SERVFAIL;
* ``records`` overrides: ``{("name.", "TXT"): ["\\"text\\""]}``.

Behaviours (``mode``): ``normal``; ``slow`` (answers after ``delay`` s);
``dead`` (reads and never answers); ``wrong_id`` / ``wrong_question`` (answers
with another ID or another question name: a resolver must ignore them);
``tc`` (UDP answers are empty with TC set, TCP answers are complete);
``babble`` (answers every TCP query with a frame of another ID every
``delay`` s, forever: each read a client makes succeeds, none is its answer).
``tls=(certfile, keyfile)`` serves DNS over TLS instead of plain TCP.
Only loopback addresses are accepted.
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["MODES", "StubUpstream", "make_self_signed"]

MODES = ("normal", "slow", "dead", "wrong_id", "wrong_question", "tc", "babble")


class StubUpstream:
    """A DNS server on a loopback UDP + TCP (or TLS) port, run by a thread."""

    def __init__(self, mode: str = "normal", *, host: str = "127.0.0.1", port: int = 0,
                 ttl: int = 300, soa_ttl: int = 3600, soa_minimum: int = 60,
                 delay: float = 3.0, records: dict[tuple[str, str], list[str]] | None = None,
                 tls: tuple[str, str] | None = None,
                 handler: Callable[[dns.message.Message], dns.message.Message | None] | None = None
                 ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("stub upstreams listen on loopback only")
        self.mode = mode
        self.ttl, self.soa_ttl, self.soa_minimum, self.delay = ttl, soa_ttl, soa_minimum, delay
        self.records = {(n.lower(), t.upper()): v for (n, t), v in (records or {}).items()}
        self.handler = handler
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        for attempt in range(50):       # UDP and TCP on one port number: retry a taken TCP port
            self.udp = socket.socket(fam, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(fam, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if port or attempt == 49:
                    raise
        self.tcp.listen(64)
        self.host = host
        self.ssl: ssl.SSLContext | None = None
        if tls is not None:
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.load_cert_chain(tls[0], tls[1])
        self.log: list[tuple[str, int, str]] = []     # (qname lower, qtype, "udp"|"tcp")
        self.sources: list[tuple[str, Any]] = []        # (qname lower, client address) over UDP
        self.arrivals: list[tuple[str, float, str]] = []  # (qname lower, time.monotonic(), transport)
        self.accepts = 0                                # TCP/TLS connections accepted
        self.tcp_peers: list[Any] = []                  # their client addresses
        self.log_raw: list[str] = []                    # qnames as they came (case kept)
        self.lock = threading.Lock()
        self.paused = False                         # True: behave as dead
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stub-upstream-{self.port}",
                                        daemon=True)
        self._thread.start()

    # -- public -------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def hostport(self) -> str:
        """``IP:PORT`` as a Corefile ``forward`` destination."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def count(self, name: str | None = None, transport: str | None = None) -> int:
        """Queries received (for ``name`` if given, any case; over ``transport``)."""
        with self.lock:
            return sum(1 for n, _, t in self.log
                       if (name is None or n == name.lower()) and (transport is None or t == transport))

    def arrived(self, name: str | None = None, transport: str | None = None) -> list[float]:
        """``time.monotonic()`` of each query that came in (for ``name``, any case; over
        ``transport``), recorded on receipt: before any ``slow`` delay, also when
        ``dead`` or paused."""
        with self.lock:
            return [t for n, t, tr in self.arrivals
                    if (name is None or n == name.lower()) and (transport is None or tr == transport)]

    def names(self) -> Counter[str]:
        with self.lock:
            return Counter(n for n, _, _ in self.log)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.udp.close()
        self.tcp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answers --------------------------------------------------------------

    def answer(self, q: dns.message.Message) -> dns.message.Message:
        """The response this stub gives to ``q`` (content only; modes apply later)."""
        if self.handler is not None:
            r = self.handler(q)
            if r is not None:
                return r
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        qs = q.question[0]
        name = qs.name.to_text().lower()
        rtype = dns.rdatatype.to_text(qs.rdtype)
        first = qs.name.labels[0].decode(errors="replace").lower() if qs.name.labels else ""
        soa = dns.rrset.from_text("example.", self.soa_ttl, "IN", "SOA",
                                  f"ns.example. admin.example. 1 7200 900 1209600 {self.soa_minimum}")
        if (name, rtype) in self.records:
            r.answer.append(dns.rrset.from_text_list(qs.name, self.ttl, "IN", rtype,
                                                     self.records[(name, rtype)]))
        elif first.startswith("nx"):
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(soa)
        elif first.startswith("fail"):
            r.set_rcode(dns.rcode.SERVFAIL)
        elif first.startswith("nodata"):
            r.authority.append(soa)
        elif rtype == "A":
            r.answer.append(dns.rrset.from_text(qs.name, self.ttl, "IN", "A", "192.0.2.1"))
        elif rtype == "AAAA":
            r.answer.append(dns.rrset.from_text(qs.name, self.ttl, "IN", "AAAA", "2001:db8::1"))
        elif rtype == "NS" and name == ".":
            r.answer.append(dns.rrset.from_text(".", self.ttl, "IN", "NS", "a.root.example."))
        else:
            r.authority.append(soa)
        return r

    def _respond(self, data: bytes, transport: str, addr: Any = None) -> bytes | None:
        try:
            q = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if not q.question:
            return None
        qs = q.question[0]
        with self.lock:
            self.log.append((qs.name.to_text().lower(), qs.rdtype, transport))
            self.log_raw.append(qs.name.to_text())
        if self.mode == "dead" or self.paused:
            return None
        r = self.answer(q)
        if self.mode == "tc" and transport == "udp":
            r.answer.clear()
            r.authority.clear()
            r.flags |= dns.flags.TC
        if self.mode == "wrong_question":
            # another name of the same length in the question: change its first letter
            return _other_question(r.to_wire())
        try:
            wire = r.to_wire(max_size=65535 if transport == "tcp" else max(512, q.payload or 512))
        except dns.exception.TooBig:            # as a server must: an empty answer with TC
            r.answer.clear()
            r.authority.clear()
            r.additional.clear()
            r.flags |= dns.flags.TC
            wire = r.to_wire()
        if self.mode in ("wrong_id", "babble"):
            wire = struct.pack("!H", (struct.unpack("!H", wire[:2])[0] + 1) & 0xFFFF) + wire[2:]
        return wire

    # -- the thread -----------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.tcp, selectors.EVENT_READ, "accept")
        self.udp.setblocking(False)
        self.tcp.setblocking(False)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                kind = key.data
                if kind == "udp":
                    self._udp_ready()
                elif kind == "accept":
                    try:
                        c, peer = self.tcp.accept()
                    except OSError:
                        continue
                    with self.lock:
                        self.accepts += 1
                        self.tcp_peers.append(peer)
                    threading.Thread(target=self._tcp_conn, args=(c,), daemon=True).start()
        sel.close()

    def _udp_ready(self) -> None:
        while True:
            try:
                data, addr = self.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._arrive(data, "udp", addr)
            if self.mode == "slow":
                t = threading.Timer(self.delay, self._udp_send, (data, addr))
                t.daemon = True         # a late answer never holds up the test run's exit
                t.start()
            else:
                self._udp_send(data, addr)

    def _arrive(self, data: bytes, transport: str, addr: Any = None) -> None:
        try:
            q = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        if q.question:
            with self.lock:
                self.arrivals.append((q.question[0].name.to_text().lower(), time.monotonic(),
                                      transport))
                if addr is not None:        # on receipt: a slow answer's socket is still open
                    self.sources.append((q.question[0].name.to_text().lower(), addr))

    def _udp_send(self, data: bytes, addr: Any) -> None:
        out = self._respond(data, "udp", addr)
        if out is not None:
            try:
                self.udp.sendto(out, addr)
            except OSError:
                pass

    def _tcp_conn(self, c: socket.socket) -> None:
        c.setblocking(True)
        c.settimeout(10)
        send_lock = threading.Lock()

        def send_late(msg: bytes) -> None:
            # ``slow``: each pipelined query is answered ``delay`` after it came, as
            # servers that answer concurrently (CoreDNS, Unbound) do: out of order
            out = self._respond(msg, "tcp")
            if out is not None:
                with send_lock:
                    try:
                        c.sendall(struct.pack("!H", len(out)) + out)
                    except OSError:
                        pass
        try:
            if self.ssl is not None:
                c = self.ssl.wrap_socket(c, server_side=True)
            while not self._stop.is_set():
                head = _recv_exact(c, 2)
                if head is None:
                    return
                msg = _recv_exact(c, struct.unpack("!H", head)[0])
                if msg is None:
                    return
                self._arrive(msg, "tcp")
                if self.mode == "slow":
                    t = threading.Timer(self.delay, send_late, (msg,))
                    t.daemon = True
                    t.start()
                    continue
                out = self._respond(msg, "tcp")
                if out is None:
                    continue
                with send_lock:
                    c.sendall(struct.pack("!H", len(out)) + out)
                while self.mode == "babble" and not self._stop.wait(self.delay):
                    c.sendall(struct.pack("!H", len(out)) + out)      # never the answer
        except (OSError, ssl.SSLError):
            return
        finally:
            c.close()


def _other_question(wire: bytes) -> bytes:
    """The same response with the first letter of the question name changed."""
    b = bytearray(wire)
    if len(b) > 13 and b[12] > 0:
        b[13] = ord("q") if b[13] not in (ord("q"), ord("Q")) else ord("z")
    return bytes(b)


def _recv_exact(c: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = c.recv(n - len(buf))
        except TimeoutError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def make_self_signed(directory: str | Path, name: str = "dns.test") -> tuple[str, str]:
    """A self-signed certificate for ``name`` (and 127.0.0.1): (certfile, keyfile)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = Path(directory)
    certfile, keyfile = d / f"{name}.crt", d / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)
