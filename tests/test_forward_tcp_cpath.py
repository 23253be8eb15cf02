"""TCP upstreams of both forwarders (the C one, fastdns/_loop_fwtcp.pxi, and the
Python one, fastdns/worker/streams.py), against real peers.

Upstreams here are real TCP servers on loopback, each scripted to misbehave in one
way a real one can: answering pipelined queries out of order, closing mid-stream,
trickling an answer a few bytes at a time, sending frames that are not the answer,
sending a frame too short to be DNS, never answering.  Clients are dnspython
(pipelined TCP, UDP) and dig (+tcp +keepopen).
"""

from __future__ import annotations

import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from fastdns._testing.upstream import StubUpstream
from tests.forward_support import PROBE_BLOCK, a_addresses, ask, serve, wait_until


@pytest.fixture(autouse=True, params=["c", "python"])
def forwarder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs against both forwarders: the C one and the Python one (what
    DoT upstreams use; FASTDNS_PYTHON_FORWARD=1 puts every query on it)."""
    if request.param == "python":
        monkeypatch.setenv("FASTDNS_PYTHON_FORWARD", "1")
    else:
        monkeypatch.delenv("FASTDNS_PYTHON_FORWARD", raising=False)
    return request.param


def _answer(q: dns.message.Message, addr: str = "192.0.2.7") -> bytes:
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", addr))
    return r.to_wire()


def _frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


class ScriptedTcp:
    """A TCP DNS server on loopback; ``script(conn, queries)`` runs per connection with
    a function that reads the next query (None at EOF)."""

    def __init__(self, script: Callable[[socket.socket, Callable[[], Any]], None]) -> None:
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self.queries: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with self.lock:
                self.accepts += 1
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        c.settimeout(10)

        def read(wait: float | None = None) -> dns.message.Message | None:
            """The next query (None at EOF); ``wait``: TimeoutError if none starts
            within that many seconds (a frame once begun is always read whole)."""
            if wait is not None and not select.select([c], [], [], wait)[0]:
                raise TimeoutError
            try:
                head = c.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return None
                data = c.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                q = dns.message.from_wire(data)
            except (OSError, dns.exception.DNSException):
                return None
            with self.lock:
                self.queries.append(q.question[0].name.to_text().lower())
            return q
        try:
            self.script(c, read)
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        with self.lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    def __enter__(self) -> ScriptedTcp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _conf(*ups: str, extra: str = "") -> str:
    return (PROBE_BLOCK + ". {\n    errors\n    forward . " + " ".join(ups) +
            " {\n        force_tcp\n        policy sequential\n        health_check 1h\n"
            + extra + "    }\n}\n")


def _ask_udp_many(s: Any, names: list[str], timeout: float = 20.0) -> dict[str, dns.message.Message]:
    """Every name asked at once over UDP; their answers by name."""
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(0.2)
    by_id: dict[int, str] = {}
    try:
        for n in names:
            q = dns.message.make_query(n, "A")
            by_id[q.id] = n
            c.sendto(q.to_wire(), (s.host, s.port))
        got: dict[str, dns.message.Message] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(names) and time.monotonic() < deadline:
            try:
                data = c.recv(65535)
            except TimeoutError:
                continue
            r = dns.message.from_wire(data)
            if r.id in by_id:
                got[by_id[r.id]] = r
        return got
    finally:
        c.close()


def test_pipelined_queries_answered_out_of_order_reach_their_askers(tmp_path):
    """40 queries at once on force_tcp: the upstream reads them as they come on each
    connection and answers each connection's queries in reverse order, each with an
    address of its own; every client gets the answer to its own question."""
    def reverse(c: socket.socket, read: Callable[[], Any]) -> None:
        while True:
            batch = []
            while True:
                try:
                    q = read(0.3)
                except TimeoutError:
                    q = None
                if q is None:
                    break
                batch.append(q)
            if not batch:
                return
            for q in reversed(batch):
                n = int(q.question[0].name.labels[0][1:])
                c.sendall(_frame(_answer(q, f"10.0.0.{n + 1}")))
    with ScriptedTcp(reverse) as up, serve(tmp_path, _conf(up.hostport)) as s:
        names = [f"q{i}.example." for i in range(40)]
        got = _ask_udp_many(s, names)
        assert len(got) == 40
        for i, n in enumerate(names):
            assert got[n].rcode() == dns.rcode.NOERROR, got[n]
            assert a_addresses(got[n]) == [f"10.0.0.{i + 1}"], (n, got[n])
        assert 1 <= up.accepts <= 4


def test_frames_that_are_not_the_answer_are_ignored_and_never_cached(tmp_path):
    """Before each real answer the upstream sends one with another ID and one (with
    the right ID) for another name, x + the name: the client gets the real one, and
    the cache holds only that (asked later, the other name gets its real answer)."""
    def noisy(c: socket.socket, read: Callable[[], Any]) -> None:
        while (q := read()) is not None:
            wrong_id = dns.message.from_wire(_answer(q, "6.6.6.6"))
            wrong_id.id ^= 0x0101
            c.sendall(_frame(wrong_id.to_wire()))
            other = dns.message.make_query("x" + q.question[0].name.to_text(), "A")
            other.id = q.id
            c.sendall(_frame(_answer(other, "6.6.6.7")))
            c.sendall(_frame(_answer(q)))
    conf = _conf("127.0.0.1:1").replace("    errors\n", "    errors\n    cache 60\n")
    with ScriptedTcp(noisy) as up, \
            serve(tmp_path, conf.replace("127.0.0.1:1", up.hostport)) as s:
        for i in range(5):
            r, _ = ask(s, f"n{i}.example.")
            assert a_addresses(r) == ["192.0.2.7"]
        for i in range(5):                              # now from the cache
            r, _ = ask(s, f"n{i}.example.")
            assert a_addresses(r) == ["192.0.2.7"]
        r, _ = ask(s, "xn0.example.")                   # never stored from the noise
        assert a_addresses(r) == ["192.0.2.7"]
        assert up.queries.count("n0.example.") == 1     # the second ask was a cache hit


def test_an_upstream_closing_mid_stream_costs_no_answer(tmp_path):
    """The first connection answers one query, then takes three and closes without
    answering: those are asked again on a new connection (a reused one broke), and
    every client gets its answer."""
    state = {"conns": 0}

    def flaky(c: socket.socket, read: Callable[[], Any]) -> None:
        state["conns"] += 1
        first = state["conns"] == 1
        answered = 0
        while (q := read()) is not None:
            if first and answered >= 1:
                # read what is already queued, then hang up on it
                time.sleep(0.2)
                return
            c.sendall(_frame(_answer(q)))
            answered += 1
    with ScriptedTcp(flaky) as up, serve(tmp_path, _conf(up.hostport)) as s:
        r, _ = ask(s, "warm.example.")
        assert a_addresses(r) == ["192.0.2.7"]
        got = _ask_udp_many(s, ["x1.example.", "x2.example.", "x3.example."])
        assert len(got) == 3
        assert all(a_addresses(r) == ["192.0.2.7"] for r in got.values()), got
        assert up.accepts == 2


def test_an_upstream_that_hangs_up_on_every_query_fails_over_and_is_logged(tmp_path):
    """An upstream that closes every connection on the first query: the next upstream
    answers; the errors plugin is silent (the query was answered) and the debug log
    has Go's text for the failed attempt."""
    def rude(c: socket.socket, read: Callable[[], Any]) -> None:
        read()
    with ScriptedTcp(rude) as bad, StubUpstream() as good, \
            serve(tmp_path, _conf(bad.hostport, good.hostport)) as s:
        r, _ = ask(s, "a.example.")
        assert a_addresses(r) == ["192.0.2.1"]
        assert good.count("a.example.", "tcp") == 1
    with ScriptedTcp(rude) as bad, serve(tmp_path, _conf(bad.hostport)) as s:
        r, _ = ask(s, "b.example.")
        assert r.rcode() == dns.rcode.SERVFAIL
        assert wait_until(lambda: f"read tcp" in s.output() and
                          f"127.0.0.1:{bad.port}: EOF" in s.output(), 5), s.output()[-2000:]


def test_a_trickled_answer_is_assembled_and_a_stalled_one_times_out(tmp_path):
    """An answer written 3 bytes at a time is still the answer; one that stops halfway
    ends at the flight's deadline (SERVFAIL, read_timeout + slack), and the server
    keeps answering other names from another upstream meanwhile."""
    def trickle(c: socket.socket, read: Callable[[], Any]) -> None:
        while (q := read()) is not None:
            data = _frame(_answer(q))
            stall = q.question[0].name.labels[0].startswith(b"stall")
            for i in range(0, len(data) if not stall else len(data) // 2, 3):
                c.sendall(data[i:i + 3])
                time.sleep(0.01)
            if stall:
                time.sleep(5)
                return
    with ScriptedTcp(trickle) as up, serve(tmp_path, _conf(up.hostport,
                                                             extra="        expire 30s\n")) as s:
        r, _ = ask(s, "slowly.example.", timeout=10)
        assert a_addresses(r) == ["192.0.2.7"]
        t0 = time.monotonic()
        r, _ = ask(s, "stall.example.", timeout=10)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - t0 < 8                # the deadline, not the stall's end


def test_a_frame_too_short_for_dns_closes_the_connection(tmp_path):
    """A 5-byte frame cannot be DNS: the connection is dropped, the query goes to the
    next upstream, and the errors plugin would say why."""
    def short(c: socket.socket, read: Callable[[], Any]) -> None:
        while read() is not None:
            c.sendall(_frame(b"\x00\x01\x02\x03\x04"))
    with ScriptedTcp(short) as bad, StubUpstream() as good, \
            serve(tmp_path, _conf(bad.hostport, good.hostport)) as s:
        r, _ = ask(s, "a.example.")
        assert a_addresses(r) == ["192.0.2.1"]
        r, _ = ask(s, "b.example.")
        assert a_addresses(r) == ["192.0.2.1"]
        assert bad.accepts == 2                          # each broken one closed


def test_tcp_clients_misses_go_upstream_over_tcp_and_pipeline(tmp_path):
    """Without force_tcp a TCP client's miss goes upstream over TCP (CoreDNS's rule),
    a UDP client's over UDP; with prefer_udp both over UDP.  The TCP client pipelines
    ten queries on one connection and gets each answer by its ID."""
    for extra, tcp_transport in (("", "tcp"), ("        prefer_udp\n", "udp")):
        conf = _conf("127.0.0.1:1", extra=extra).replace("        force_tcp\n", "")
        with StubUpstream("slow", delay=0.2) as up, \
                serve(tmp_path, conf.replace("127.0.0.1:1", up.hostport)) as s:
            c = socket.create_connection((s.host, s.port), timeout=10)
            try:
                qs = [dns.message.make_query(f"t{i}.example.", "A") for i in range(10)]
                for q in qs:
                    dns.query.send_tcp(c, q)
                got = {}
                for _ in qs:
                    r, _ = dns.query.receive_tcp(c, expiration=time.time() + 10)
                    got[r.id] = r
            finally:
                c.close()
            for q in qs:
                assert a_addresses(got[q.id]) == ["192.0.2.1"]
                assert got[q.id].question == q.question
            assert up.count("t0.example.", tcp_transport) == 1, up.log
            r, _ = ask(s, "u0.example.")
            assert a_addresses(r) == ["192.0.2.1"]
            assert up.count("u0.example.", "udp") == 1, up.log


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")
def test_dig_keepopen_over_tcp_through_the_c_forwarder(tmp_path):
    with StubUpstream() as up, serve(tmp_path, _conf(up.hostport)) as s:
        out = subprocess.run(["dig", "+tcp", "+keepopen", "+short", "-p", str(s.port),
                              f"@{s.host}", "k1.example.", "k2.example.", "k3.example."],
                             capture_output=True, text=True, timeout=30).stdout
        assert out.split() == ["192.0.2.1"] * 3, out
        assert up.count(transport="tcp") >= 3


def test_udp_truncated_answer_is_retried_over_tcp_in_c_and_relayed(tmp_path):
    """A UDP answer with TC: the same upstream asked again over TCP; a UDP client with
    room gets all of it, one without gets TC, a TCP client all of it."""
    many = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(60)]
    with StubUpstream("tc", records={("big.example.", "A"): many}) as up, \
            serve(tmp_path, PROBE_BLOCK + f". {{\n    forward . {up.hostport}\n}}\n") as s:
        r, _ = ask(s, "big.example.", use_edns=0, payload=4096)
        assert sorted(a_addresses(r)) == sorted(many)
        assert up.count("big.example.", "udp") == 1 and up.count("big.example.", "tcp") == 1
        r, _ = ask(s, "big.example.")                   # no EDNS: 512 bytes
        assert r.flags & dns.flags.TC
        r, _ = ask(s, "big.example.", tcp=True)
        assert sorted(a_addresses(r)) == sorted(many)


def test_connections_are_closed_after_expire(tmp_path):
    """An idle upstream connection is closed ``expire`` after its last use (seen by the
    upstream as EOF); the next miss opens a new one."""
    closed = threading.Event()

    def answer_all(c: socket.socket, read: Callable[[], Any]) -> None:
        while (q := read()) is not None:
            c.sendall(_frame(_answer(q)))
        closed.set()
    with ScriptedTcp(answer_all) as up, \
            serve(tmp_path, _conf(up.hostport, extra="        expire 1s\n")) as s:
        r, _ = ask(s, "e1.example.")
        assert a_addresses(r) == ["192.0.2.7"]
        assert closed.wait(10)
        r, _ = ask(s, "e2.example.")
        assert a_addresses(r) == ["192.0.2.7"]
        assert up.accepts == 2
