"""fastdns-bench's engine against real UDP servers on loopback: exact counts, rates."""

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
    # every 10th query dropped; every 7th (not dropped) answered after 0.35 s,
    # past the 0.25 s timeout but within the 2 x timeout late window
    with ScriptedServer(drop_every=10, delay_every=7, delay=0.35) as srv:
        r = run_load(w, LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, concurrency=32,
                                    timeout=0.25, probe=False))
        c = srv.counts()
    d = to_dict(r)
    assert c["received"] > 300
    assert d["sent"] == c["received"]
    assert d["answered"] == c["answered"]
    assert d["lost"] == c["dropped"] + c["delayed"]
    assert d["late"] == c["delayed"]
    assert d["unexpected"] == 0
    assert d["rcodes"] == {"NOERROR": c["answered"]}
    assert sum(s["sent"] for s in d["per_second"]) == d["sent"]
    assert sum(s["lost"] for s in d["per_second"]) == d["lost"]
    assert sum(s["late"] for s in d["per_second"]) == d["late"]
    assert d["latency_us"]["max"] < 250_000      # late answers are not in the latencies


def test_counting_is_exact_with_several_processes():
    w = workload_from_queries(QUERIES)
    with ScriptedServer(drop_every=10) as srv:
        r = run_load(w, LoadOptions(server=("127.0.0.1", srv.port), duration=0.8, concurrency=8,
                                    procs=2, timeout=0.2, probe=False))
        c = srv.counts()
    assert r.counters["sent"] == c["received"]
    assert r.counters["answered"] == c["answered"]
    assert r.counters["lost"] == c["dropped"]


def test_open_loop_rate_within_2_percent(responder):
    port, _ = responder
    rate, duration = 4000.0, 2.0
    r = run_load(workload_from_queries(QUERIES),
                 LoadOptions(server=("127.0.0.1", port), duration=duration, rate=rate, timeout=0.5))
    d = to_dict(r)
    assert d["sent"] == pytest.approx(rate * duration, rel=0.02)
    assert d["answered"] == pytest.approx(rate * duration, rel=0.02)
    for sec in d["per_second"][:2]:
        assert sec["sent"] == pytest.approx(rate, rel=0.02)
    assert d["lost"] == 0


def test_open_loop_counts_latency_from_the_intended_time():
    """A server that answers each query 50 ms late caps a closed loop of 1 at
    20 qps, but an open loop at 100/s must keep sending and see ~50 ms."""
    with ScriptedServer(delay_every=1, delay=0.05) as srv:
        r = run_load(workload_from_queries(QUERIES),
                     LoadOptions(server=("127.0.0.1", srv.port), duration=1.0, rate=100, timeout=0.5,
                                 probe=False))
    d = to_dict(r)
    assert d["sent"] == pytest.approx(100, abs=2)
    assert 50_000 <= d["latency_us"]["p50"] < 80_000


def test_responder_agrees_with_client_count(responder):
    port, p = responder
    r = run_load(workload_from_queries(QUERIES),
                 LoadOptions(server=("127.0.0.1", port), duration=0.5, concurrency=64, probe=False))
    assert r.counters["answered"] == r.counters["sent"] > 1000
    assert r.counters["lost"] == 0
