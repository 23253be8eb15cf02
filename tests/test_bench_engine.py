"""fastdns-bench's engine against real UDP servers on loopback: exact counts, the open
loop's schedule, latencies bounded below by the server's injected delay.

A loaded machine can only make the engine (and the servers) late, never early: the
assertions are exact counts, lower bounds, and upper bounds that hold whatever the load
(what the schedule allows), plus generous ones several times the expected value."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from fastdns.bench.load import LoadOptions, run_load
from fastdns.bench.queries import Query, workload_from_queries
from fastdns.bench.report import to_dict
from fastdns.bench.testserver import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [Query(f"q{i}.example.com", "A") for i in range(50)]


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    """benchmarks/responder.c built and running on a free port."""
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed: cannot build benchmarks/responder.c")
    exe = tmp_path_factory.mktemp("resp") / "responder"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "benchmarks/responder.c")], check=True)
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([str(exe), str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "responder on" in p.stdout.readline()
    yield port, p
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)


def test_counting_is_exact_with_drops_and_late_answers():
    w = workload_from_queries(QUERIES)
    # every 10th query dropped; every 7th (not dropped) answered after 1.5 s, past the
    # 1 s timeout but within the 2 x timeout late window (0.5 s of margin either side)
    with ScriptedServer(drop_every=10, delay_every=7, delay=1.5) as srv:
        r = run_load(w, LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, concurrency=32,
                                    timeout=1.0, probe=False))
        c = srv.counts()
    d = to_dict(r)
    assert c["dropped"] > 0 and c["delayed"] > 0          # both kinds happened
    assert d["sent"] == c["received"]
    assert d["answered"] == c["answered"]
    assert d["lost"] == c["dropped"] + c["delayed"]
    assert d["late"] == c["delayed"]
    assert d["unexpected"] == 0
    assert d["rcodes"] == {"NOERROR": c["answered"]}
    assert sum(s["sent"] for s in d["per_second"]) == d["sent"]
    assert sum(s["lost"] for s in d["per_second"]) == d["lost"]
    assert sum(s["late"] for s in d["per_second"]) == d["late"]
    assert d["latency_us"]["max"] < 1_000_000    # late answers (1.5 s) are not in the latencies


def test_counting_is_exact_with_several_processes():
    w = workload_from_queries(QUERIES)
    with ScriptedServer(drop_every=10) as srv:
        r = run_load(w, LoadOptions(server=("127.0.0.1", srv.port), duration=0.8, concurrency=8,
                                    procs=2, timeout=1.0, probe=False))
        c = srv.counts()
    assert r.counters["sent"] == c["received"]
    assert r.counters["answered"] == c["answered"]
    assert r.counters["lost"] == c["dropped"]


def test_open_loop_sends_rate_times_duration_on_schedule(responder):
    """Lookup k is due at t0 + k / rate: the engine sends exactly rate x duration of them,
    never one before it is due (the running total at the end of each second is at most
    what was due by then), and does not leave them for the end."""
    port, _ = responder
    rate, duration = 4000.0, 2.0
    r = run_load(workload_from_queries(QUERIES),
                 LoadOptions(server=("127.0.0.1", port), duration=duration, rate=rate, timeout=5.0))
    d = to_dict(r)
    assert d["sent"] == d["answered"] == int(rate * duration)
    assert d["lost"] == 0
    total = 0
    for k, sec in enumerate(d["per_second"][:2]):
        total += sec["sent"]
        assert total <= rate * (k + 1)                  # never ahead of the schedule
        assert sec["sent"] >= rate / 4                  # sent while due, not in a burst later


def test_open_loop_keeps_sending_to_a_slow_server():
    """A server that answers each query 50 ms late caps a closed loop of 1 at
    20 qps, but an open loop at 100/s must keep sending and see ~50 ms (not the
    seconds a loop waiting for each answer would show)."""
    with ScriptedServer(delay_every=1, delay=0.05) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, rate=100, timeout=2.0,
                                 probe=False))
        c = srv.counts()
    d = to_dict(r)
    assert d["sent"] == d["answered"] == c["received"] == 100
    assert d["latency_us"]["p50"] >= 50_000            # the server's delay, at least
    assert d["latency_us"]["p50"] < 400_000            # 8 x that: not queued behind each other


def test_open_loop_counts_latency_from_the_intended_time():
    """One lookup in flight at most and a server that answers 50 ms late: lookup k is
    due at k x 10 ms but can only be sent once k - 1 is answered, at >= k x 50 ms, so
    counted from when it was due its latency is >= 40 k + 50 ms (no coordinated
    omission: counted from when it was sent it would be ~50 ms)."""
    # (a timeout longer than the whole run, ~2.5 s: the lookups started after the 0.5 s
    # have their timeout counted from the end of the duration, not from their send)
    with ScriptedServer(delay_every=1, delay=0.05) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=0.5, rate=100, timeout=10.0,
                                 probe=False, max_in_flight=1))
    d = to_dict(r)
    assert d["sent"] == d["answered"] == 50 and d["lost"] == 0
    assert d["latency_us"]["p50"] >= 40 * 24 * 1000 + 50_000 - 1000     # (1 ms buckets there)
    assert d["latency_us"]["max"] >= 40 * 49 * 1000 + 50_000


def test_responder_agrees_with_client_count(responder):
    port, p = responder
    r = run_load(workload_from_queries(QUERIES),
                 LoadOptions(server=("127.0.0.1", port), duration=0.5, concurrency=64, probe=False,
                             timeout=5.0))
    assert r.counters["answered"] == r.counters["sent"] >= 64     # more than one round
    assert r.counters["lost"] == 0
