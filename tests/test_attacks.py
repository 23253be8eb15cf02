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
import dns.rrset
import pytest

from fastdns import limits
from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from tests.attacks_support import ask_all
from tests.server_support import make_cluster_dir

API = "api.prod.svc.cluster.local."


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


def connect_from(srv: ServeProcess, i: int, sources: int = 6) -> socket.socket:
    """A TCP connection from one of ``sources`` loopback addresses (127.0.0.2…),
    so that no source reaches TCP_MAX_PER_SOURCE."""
    return socket.create_connection((srv.host, srv.port), timeout=5,
                                    source_address=(f"127.0.0.{2 + i % sources}", 0))


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
            for i in range(300):
                held.append(connect_from(srv, i))
            got = ask_all(srv.host, srv.port, [API] * 1)
            assert got, "no UDP answer with 300 idle TCP connections open"
            for i in range(len(held), limits.TCP_MAX_CONNECTIONS + surplus):
                held.append(connect_from(srv, i))
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
            # they went upstream from ~40 sockets (the stub may drop some datagrams
            # itself under load; the source ports it saw tell how many sockets)
            ports = {addr[1] for _, addr in up.sources}
            assert len(ports) >= 20, len(ports)
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
            flood = [f"b{i}.bad.test." for i in range(3 * limits.UPSTREAM_TCP_CONNS_PER_UPSTREAM)]
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
                # the bad zone's queries each end (SERVFAIL)
                bad_answers = ask_all(srv.host, srv.port, flood, timeout=30)
                assert {r.rcode() for r in bad_answers.values()} == {dns.rcode.SERVFAIL}
            finally:
                s.close()
            assert bad.count(transport="tcp") > limits.UPSTREAM_TCP_CONNS_PER_UPSTREAM, bad.count()
            assert srv.worker_pids() == [pid]


def test_slowloris_connections_are_closed_at_their_deadline(tmp_path: Path) -> None:
    """One byte every second never makes a query: such connections are closed once
    TCP_IDLE_TIMEOUT has passed since they opened, however many bytes trickle in.
    A connection that sends a whole query as often stays open and is answered."""
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as srv:
        (pid,) = srv.worker_pids()
        slow = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(200)]
        good = socket.create_connection((srv.host, srv.port), timeout=5)
        opened = time.monotonic()
        query = dns.message.make_query(API, "A").to_wire()
        frame = len(query).to_bytes(2, "big") + query
        closed_at: dict[int, float] = {}
        answered = 0
        try:
            # a 2-byte length announcing a big frame, then a trickle of its bytes
            for c in slow:
                c.sendall(b"\x01\x00")
            while time.monotonic() - opened < limits.TCP_IDLE_TIMEOUT * 1.5:
                for i, c in enumerate(slow):
                    if i in closed_at:
                        continue
                    try:
                        c.sendall(b"x")
                        c.setblocking(False)
                        if c.recv(1) == b"":
                            closed_at[i] = time.monotonic() - opened
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic() - opened
                    finally:
                        c.setblocking(True)
                good.sendall(frame)
                n = int.from_bytes(_recv_exact(good, 2), "big")
                answered += dns.message.from_wire(_recv_exact(good, n)).rcode() == dns.rcode.NOERROR
                time.sleep(1.0)
            deadline = time.monotonic() + 60          # the rest: closed soon after, at the latest
            while len(closed_at) < len(slow) and time.monotonic() < deadline:
                for i, c in enumerate(slow):
                    if i not in closed_at:
                        try:
                            c.settimeout(0.05)
                            if c.recv(1) == b"":
                                closed_at[i] = time.monotonic() - opened
                        except TimeoutError:
                            pass
                        except OSError:
                            closed_at[i] = time.monotonic() - opened
        finally:
            for c in slow:
                c.close()
        assert len(closed_at) == len(slow), f"{len(slow) - len(closed_at)} slow connections held"
        assert min(closed_at.values()) >= limits.TCP_IDLE_TIMEOUT * 0.9, sorted(closed_at.values())[:5]
        # the connection that kept sending whole queries was answered every time, and lives on
        good.sendall(frame)
        n = int.from_bytes(_recv_exact(good, 2), "big")
        assert dns.message.from_wire(_recv_exact(good, n)).rcode() == dns.rcode.NOERROR
        good.close()
        assert answered >= 10
        assert srv.worker_pids() == [pid]


def test_reconnecting_tcp_flood_leaves_udp_untouched(tmp_path: Path) -> None:
    """1200 connections that reconnect as soon as they are closed, against one
    worker: legitimate UDP queries are answered throughout (>= 99 %), and the
    worker keeps its PID."""
    import threading
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as srv:
        (pid,) = srv.worker_pids()
        stop = threading.Event()
        held: list[socket.socket] = []
        reconnects = [0]

        def flood() -> None:
            """Keep 1200 connections open; every one the server closes is replaced."""
            poller = select.poll()
            open_: dict[int, socket.socket] = {}
            while not stop.is_set():
                while len(open_) < 1200 and not stop.is_set():
                    try:
                        c = socket.create_connection((srv.host, srv.port), timeout=2)
                    except OSError:
                        continue
                    open_[c.fileno()] = c
                    held.append(c)
                    poller.register(c, select.POLLIN)
                for fd, _ in poller.poll(50):
                    c = open_.pop(fd, None)
                    if c is None:
                        continue
                    poller.unregister(fd)
                    try:
                        c.recv(1)
                    except OSError:
                        pass
                    c.close()
                    reconnects[0] += 1

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            time.sleep(1.0)
            names = [f"{i}.nx-{i}.prod.svc.cluster.local." for i in range(1000)]
            answers = ask_all(srv.host, srv.port, names, timeout=20, pace=50)
        finally:
            stop.set()
            t.join(10)
            for c in held:
                c.close()
        assert len(answers) >= 0.99 * len(names), f"{len(answers)}/{len(names)} answered"
        assert reconnects[0] > 200, "the flood never hit the connection limit"
        assert srv.worker_pids() == [pid], srv.output()[-3000:]


def test_a_client_that_never_reads_is_cut_off(tmp_path: Path) -> None:
    """Queries with big answers, never reading them: once TCP_MAX_BUFFERED bytes of
    answers wait, the connection is closed; the worker keeps serving."""
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as srv:
        (pid,) = srv.worker_pids()
        q = dns.message.make_query("big.default.svc.cluster.local.", "A").to_wire()
        frame = len(q).to_bytes(2, "big") + q
        c = socket.create_connection((srv.host, srv.port), timeout=5)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        cut = False
        try:
            for _ in range(20000):                    # ~30 MB of answers asked for
                try:
                    c.sendall(frame * 10)
                except OSError:
                    cut = True
                    break
        finally:
            c.close()
        r = srv.try_query(API, tcp=True, timeout=5)
        assert r is not None and r.rcode() == dns.rcode.NOERROR
        assert cut, "the connection was never closed"
        assert srv.worker_pids() == [pid]


def _recv_exact(c: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def test_one_source_cannot_take_every_tcp_slot(tmp_path: Path) -> None:
    """TCP_MAX_PER_SOURCE connections from one address, then more: the extra ones
    are closed at once; another address still gets connections served."""
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as srv:
        mine = [socket.create_connection((srv.host, srv.port), timeout=5,
                                         source_address=("127.0.0.7", 0))
                for _ in range(limits.TCP_MAX_PER_SOURCE + 20)]
        try:
            closed = 0
            for c in mine[limits.TCP_MAX_PER_SOURCE - 5:]:
                c.settimeout(5)
                try:
                    closed += c.recv(1) == b""
                except (ConnectionResetError, TimeoutError):
                    pass
            assert closed >= 20, closed
            other = socket.create_connection((srv.host, srv.port), timeout=5,
                                             source_address=("127.0.0.8", 0))
            q = dns.message.make_query(API, "A").to_wire()
            other.sendall(len(q).to_bytes(2, "big") + q)
            n = int.from_bytes(_recv_exact(other, 2), "big")
            assert dns.message.from_wire(_recv_exact(other, n)).rcode() == dns.rcode.NOERROR
            other.close()
        finally:
            for c in mine:
                c.close()


def test_at_the_worker_limit_the_oldest_idle_connection_makes_room(tmp_path: Path) -> None:
    """Every slot held by idle connections (from several sources): a new client
    is not turned away; the connection idle longest is closed for it."""
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as srv:
        held = [connect_from(srv, i) for i in range(limits.TCP_MAX_CONNECTIONS)]
        try:
            time.sleep(limits.TCP_EVICT_IDLE * 1.5)
            fresh = socket.create_connection((srv.host, srv.port), timeout=5,
                                             source_address=("127.0.0.9", 0))
            q = dns.message.make_query(API, "A").to_wire()
            fresh.sendall(len(q).to_bytes(2, "big") + q)
            n = int.from_bytes(_recv_exact(fresh, 2), "big")
            assert dns.message.from_wire(_recv_exact(fresh, n)).rcode() == dns.rcode.NOERROR
            fresh.close()
            # the first one opened was the one closed for it
            held[0].settimeout(5)
            assert held[0].recv(1) == b""
        finally:
            for c in held:
                c.close()


@pytest.mark.parametrize("path", ["c", "python"])
def test_a_spray_of_every_id_at_a_known_port_poisons_nothing(tmp_path: Path, path: str) -> None:
    """The attacker of issue 18's table: it learns the port the forwarder used for one
    query (as any hostNetwork pod can from /proc/net/udp; here from the upstream's own
    log), then, while the next question waits on a slow upstream, sprays forged
    answers with all 65,536 IDs at that port from the upstream's own address and port.
    A port per query (closed once answered) leaves the spray nothing to hit: 0 of 5
    clients or cache entries poisoned."""
    env = {"FASTDNS_PYTHON_FORWARD": "1" if path == "python" else None}
    with StubUpstream("slow", delay=1.0) as up:
        core = tmp_path / "Corefile"
        core.write_text(f"invalid {{\n}}\n. {{\n    cache 60\n    forward . {up.hostport}\n}}\n")
        with ServeProcess(core, workers=1, probe=("ready-probe.invalid.", "A"), env=env) as srv:
            poisoned = 0
            for trial in range(5):
                learn = f"learn{trial}.example."
                assert ask_all(srv.host, srv.port, [learn], timeout=10)
                known = [addr for name, addr in up.sources if name == learn][-1]
                victim = f"victim{trial}.example."
                client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                client.settimeout(10)
                try:
                    client.sendto(dns.message.make_query(victim, "A").to_wire(),
                                  (srv.host, srv.port))
                    time.sleep(0.05)                    # the query is upstream now
                    forged = dns.message.make_response(dns.message.make_query(victim, "A"))
                    forged.answer.append(dns.rrset.from_text(victim, 3600, "IN", "A", "6.6.6.6"))
                    wire = bytearray(forged.to_wire())
                    for qid in range(65536):
                        wire[0], wire[1] = qid >> 8, qid & 0xFF
                        try:
                            up.udp.sendto(wire, known)
                        except OSError:
                            pass
                    answer = dns.message.from_wire(client.recv(4096))
                finally:
                    client.close()
                again = ask_all(srv.host, srv.port, [victim], timeout=10)[victim]
                got = {rd.address for rr in answer.answer + again.answer for rd in rr}
                poisoned += "6.6.6.6" in got
                assert got == {"192.0.2.1"}, (trial, got)
            assert poisoned == 0
