"""Hostile clients and upstreams cannot take a worker down (issue: hostile input).

Each test runs `fastdns serve` with one worker (a subprocess) and attacks it
on loopback for a bounded time: idle TCP connections past every limit, an
upstream that stops answering under a stream of unique names, a TCP
upstream that never stops sending frames that are not the answer.  The
worker must keep its PID, keep answering, refuse only what is over a limit
(:mod:`fastdns.limits`), and give back what it held.
"""

from __future__ import annotations

import os
import select
import socket
import time
from pathlib import Path

import dns.message
import dns.rcode

from fastdns import limits
from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from tests.server_support import make_cluster_dir

API = "api.prod.svc.cluster.local."


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


def sockets_of(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit")


def hard_open_files() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def test_tcp_connections_past_every_limit_do_not_kill_the_worker(tmp_path: Path) -> None:
    """300 idle connections (more than the old fixed poll set of 256), then past
    TCP_MAX_CONNECTIONS: the surplus is closed at once, the worker keeps its PID
    and answers UDP throughout, and TCP again once the flood is gone."""
    conf = make_cluster_dir(tmp_path)
    surplus = 100
    held: list[socket.socket] = []
    with ServeProcess(conf, workers=1) as srv:
        (pid,) = srv.worker_pids()
        soft = open_files_limit(pid)
        assert soft >= min(limits.worker_descriptors(), hard_open_files()), soft
        try:
            for _ in range(300):
                held.append(socket.create_connection((srv.host, srv.port), timeout=5))
            got = ask_all(srv.host, srv.port, [API] * 1)
            assert got, "no UDP answer with 300 idle TCP connections open"
            for _ in range(limits.TCP_MAX_CONNECTIONS + surplus - len(held)):
                held.append(socket.create_connection((srv.host, srv.port), timeout=5))
            # UDP is untouched while every TCP slot is taken
            names = [f"{i}.nx-{i}.prod.svc.cluster.local." for i in range(300)]
            answers = ask_all(srv.host, srv.port, names, timeout=20)
            assert len(answers) >= 0.99 * len(names), f"{len(answers)}/{len(names)} answered"
            assert all(r.rcode() == dns.rcode.NXDOMAIN for r in answers.values())
            # the surplus was closed by the server (EOF), not left hanging
            closed = 0
            deadline = time.monotonic() + 30
            pending = {c.fileno(): c for c in held}
            poller = select.poll()
            for fd in pending:
                poller.register(fd, select.POLLIN)
            while pending and time.monotonic() < deadline and closed < surplus:
                for fd, _ in poller.poll(1000):
                    try:
                        eof = pending[fd].recv(1) == b""
                    except ConnectionResetError:
                        eof = True
                    if eof:
                        closed += 1
                        poller.unregister(fd)
                        del pending[fd]
            assert closed >= surplus, f"only {closed} of the {surplus} connections over the limit closed"
            assert srv.worker_pids() == [pid], srv.output()[-3000:]
        finally:
            for c in held:
                c.close()
        # the slots come back: a new connection is served
        r = None
        deadline = time.monotonic() + 30
        while r is None and time.monotonic() < deadline:
            r = srv.try_query(API, tcp=True, timeout=2)
        assert r is not None and r.rcode() == dns.rcode.NOERROR
        assert srv.worker_pids() == [pid]
        assert "Traceback" not in srv.output() and "too many descriptors" not in srv.output()


def test_an_upstream_that_stops_answering_leaks_no_socket(tmp_path: Path) -> None:
    """Unique names to an upstream that reads and never answers: every client
    gets SERVFAIL after the timeout and every upstream socket opened for them
    (a new one per UDP_USES_PER_SOCKET queries) is closed again."""
    with StubUpstream("dead") as up:
        core = make_cluster_dir(tmp_path)
        core.write_text(core.read_text() + f"example {{\n    bind 127.0.0.1\n"
                        f"    forward . {up.hostport}\n}}\n")
        with ServeProcess(core, workers=1) as srv:
            (pid,) = srv.worker_pids()
            baseline = sockets_of(pid)
            n = 40 * limits.UDP_USES_PER_SOCKET           # 40 sockets' worth of queries
            names = [f"u{i}.example." for i in range(n)]
            answers = ask_all(srv.host, srv.port, names, timeout=60, pace=100)
            assert len(answers) == n, f"{n - len(answers)} of {n} never answered"
            assert {r.rcode() for r in answers.values()} == {dns.rcode.SERVFAIL}
            assert up.count() >= n                         # they did go upstream
            left = sockets_of(pid)
            assert left <= baseline + 1, f"{left - baseline} upstream sockets left open"
            assert srv.worker_pids() == [pid]


def test_a_babbling_tcp_upstream_cannot_starve_another_zone(tmp_path: Path) -> None:
    """A force_tcp upstream that answers every query with frames of another ID,
    forever, for one zone; a healthy force_tcp upstream for another.  The
    healthy zone answers throughout, and the bad one's exchanges end at their
    deadline (their threads are free again: more than one pool's worth of
    queries reach the bad upstream)."""
    with StubUpstream("babble", delay=0.2) as bad, StubUpstream() as good:
        core = tmp_path / "Corefile"
        core.write_text(f"""bad.test {{
    bind 127.0.0.1
    forward . {bad.hostport} {{
        force_tcp
    }}
}}
good.test {{
    bind 127.0.0.1
    forward . {good.hostport} {{
        force_tcp
    }}
}}
""")
        with ServeProcess(core, workers=1, probe=("warm.good.test.", "A")) as srv:
            (pid,) = srv.worker_pids()
            flood = [f"b{i}.bad.test." for i in range(3 * limits.UPSTREAM_TCP_THREADS)]
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                for i, name in enumerate(flood):                # fire and forget
                    q = dns.message.make_query(name, "A")
                    s.sendto(q.to_wire(), (srv.host, srv.port))
                time.sleep(0.5)                                  # the bad exchanges are running
                names = [f"g{i}.good.test." for i in range(10)]
                answers = ask_all(srv.host, srv.port, names, timeout=20)
                assert len(answers) == 10, f"healthy zone: {len(answers)}/10 answered"
                assert all(r.rcode() == dns.rcode.NOERROR and r.answer for r in answers.values())
                # the bad zone's queries each end (SERVFAIL) and its threads are reused
                bad_answers = ask_all(srv.host, srv.port, flood, timeout=30)
                assert {r.rcode() for r in bad_answers.values()} == {dns.rcode.SERVFAIL}
            finally:
                s.close()
            assert bad.count(transport="tcp") > limits.UPSTREAM_TCP_THREADS, bad.count()
            assert srv.worker_pids() == [pid]
