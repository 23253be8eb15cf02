"""fastdns-bench over TCP (RFC 7766) against real TCP servers on loopback:
exact counts, pipelining, reconnects, clear errors.  Counts, lower bounds tied to
the servers' injected delays, and bounds that hold however busy the machine is."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from fastdns.bench.load import LoadOptions, run_load
from fastdns.bench.queries import Query, workload_from_queries
from fastdns.bench.report import to_dict
from fastdns.bench.testserver import ScriptedServer

QUERIES = [Query(f"q{i}.example.com", "A") for i in range(50)]


def wait_until(cond, timeout: float = 10.0) -> None:
    """Until ``cond()`` (the scripted server's thread catching up), at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_tcp_counting_is_exact_with_drops_and_late_answers():
    # every 10th query dropped; every 7th (not dropped) answered after 1.5 s, past the
    # 1 s timeout but within the 2 x timeout late window (0.5 s of margin either side)
    with ScriptedServer(drop_every=10, delay_every=7, delay=1.5, tcp=True) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, concurrency=32,
                                 timeout=1.0, probe=False, tcp=True, sockets=3))
        c = srv.counts()
    d = to_dict(r)
    assert d["protocol"] == "tcp"
    assert c["dropped"] > 0 and c["delayed"] > 0          # both kinds happened
    assert d["sent"] == c["received"]
    assert d["answered"] == c["answered"]
    assert d["lost"] == c["dropped"] + c["delayed"]
    assert d["late"] == c["delayed"]
    assert d["unexpected"] == 0 and d["send_errors"] == 0
    assert d["rcodes"] == {"NOERROR": c["answered"]}
    assert d["tcp"] == {"connections": 3, "closed": 0, "connect_errors": 0}
    assert c["accepted"] == 3
    assert sum(s["sent"] for s in d["per_second"]) == d["sent"]
    assert sum(s["lost"] for s in d["per_second"]) == d["lost"]
    assert d["latency_us"]["max"] < 1_000_000    # late answers (1.5 s) are not in the latencies


def test_tcp_pipelines_several_queries_per_connection():
    """Every answer takes >= 100 ms: in the 1 s run, one query at a time per connection
    allows at most 2 connections x 11 answers; 16 in flight over 2 connections allow
    at most 16 x 11 (~160 here)."""
    with ScriptedServer(delay_every=1, delay=0.1, tcp=True) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, concurrency=16,
                                 timeout=5.0, probe=False, tcp=True, sockets=2))
        c = srv.counts()
    d = to_dict(r)
    assert c["accepted"] == 2
    assert 2 * 11 < d["answered"] <= 16 * 11, d        # pipelined, within the concurrency
    assert d["sent"] == d["answered"] == c["received"] and d["lost"] == 0
    assert d["latency_us"]["p50"] >= 100_000           # the server's delay, at least
    assert d["latency_us"]["p50"] < 400_000            # 4 x that: not queued one at a time


def test_tcp_reconnects_when_the_server_closes():
    """The server closes each connection, unanswered, at its 40th query: the
    client reopens it; written unanswered queries count as lost at once (with a
    60 s timeout, a connection closed more than once in the 1 s run shows it: one
    whose queries waited for the timeout would not have been reopened yet)."""
    with ScriptedServer(close_every=40, tcp=True) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, concurrency=8,
                                 timeout=60.0, probe=False, tcp=True, sockets=2))
        # a connection the client opened at the very end may not be accepted yet
        wait_until(lambda: srv.counts()["accepted"] >= r.counters["tcp_connects"])
        c = srv.counts()
    d = to_dict(r)
    assert c["closed"] >= 3                       # 2 connections: one was reopened and closed
    assert d["tcp"]["closed"] == c["closed"]
    assert d["tcp"]["connect_errors"] == 0
    # every close but possibly the last is followed by a new connection
    assert c["closed"] + 1 <= d["tcp"]["connections"] <= c["closed"] + 2
    assert d["tcp"]["connections"] == c["accepted"]
    assert d["answered"] == c["answered"] > 0
    assert d["lost"] == d["sent"] - d["answered"] >= c["closed"]
    # frames the client wrote after the closing one were never read
    assert c["received"] <= d["sent"]
    assert d["late"] == 0 and d["unexpected"] == 0


def test_tcp_several_processes_count_exactly():
    with ScriptedServer(drop_every=10, tcp=True) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=0.8, concurrency=8,
                                 procs=2, timeout=1.0, probe=False, tcp=True, sockets=2))
        c = srv.counts()
    assert c["accepted"] == 4
    assert r.counters["sent"] == c["received"]
    assert r.counters["answered"] == c["answered"]
    assert r.counters["lost"] == c["dropped"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastdns.cli.bench", *args],
                          check=False, capture_output=True, text=True, timeout=60)


def test_tcp_refused_and_silent_servers_are_clear_errors(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = cli("run", "--tcp", "-s", f"127.0.0.1:{port}", "--queries", str(q), "-l", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"fastdns-bench: 127.0.0.1:{port}: connection refused: nothing listens on TCP port {port}"
    with ScriptedServer(drop_every=1, tcp=True) as srv:
        r = cli("run", "--tcp", "-s", f"127.0.0.1:{srv.port}", "--queries", str(q), "-t", "0.3")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no answer over TCP within 0.3s" in r.stderr


@pytest.mark.parametrize("bad", ["0", "2000"])
def test_bad_connection_count(tmp_path, bad):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    r = cli("run", "--tcp", "-s", "127.0.0.1:53", "--queries", str(q), "--connections", bad)
    assert r.returncode == 1 and "--connections must be 1-1024" in r.stderr
