"""/metrics through real HTTP after real DNS queries: exact counts summed over 2 workers."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from fastdns._testing.server import ServeProcess, free_port
from fastdns.stats import CounterSegment
from tests.ops_support import scrape, value, wait_until
from tests.server_support import make_cluster_dir

NAME = "api.prod.svc.cluster.local."


@pytest.fixture
def served(tmp_path: Path):
    mport = free_port()
    conf = make_cluster_dir(tmp_path, extra=f"prometheus 127.0.0.1:{mport}")
    with ServeProcess(conf, workers=2) as sp:
        sp.mport = mport
        yield sp


def _udp(sp: ServeProcess, name: str, qtype: str, **kw) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype, **kw), "127.0.0.1", port=sp.port,
                         timeout=2)


def test_counts_match_the_queries_sent(served: ServeProcess) -> None:
    sp = served
    before = scrape(sp.mport)
    for _ in range(40):
        assert _udp(sp, NAME, "A").rcode() == dns.rcode.NOERROR
    for _ in range(20):
        assert _udp(sp, "nope.prod.svc.cluster.local.", "AAAA").rcode() == dns.rcode.NXDOMAIN
    for _ in range(10):
        assert _udp(sp, "example.org.", "TXT").rcode() == dns.rcode.SERVFAIL   # no next plugin
    for _ in range(5):
        assert _udp(sp, NAME, "A", want_dnssec=True).rcode() == dns.rcode.NOERROR
    for _ in range(6):
        r = dns.query.tcp(dns.message.make_query(NAME, "A"), "127.0.0.1", port=sp.port, timeout=2)
        assert r.rcode() == dns.rcode.NOERROR
    # three malformed datagrams, then a query on the same socket (same worker, in order)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for junk in (b"\x01\x02\x03", b"\x00" * 5, b"\xff" * 11):
            s.sendto(junk, ("127.0.0.1", sp.port))
        q = dns.message.make_query(NAME, "A")
        s.sendto(q.to_wire(), ("127.0.0.1", sp.port))
        assert dns.message.from_wire(s.recv(4096)).id == q.id
    after = scrape(sp.mport)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    zone = {"zone": ".", "server": f"dns://127.0.0.1:{sp.port}", "view": ""}
    assert delta("coredns_dns_requests_total", proto="udp", family="1", type="A", **zone) == 46
    assert delta("coredns_dns_requests_total", proto="udp", type="AAAA", **zone) == 20
    assert delta("coredns_dns_requests_total", proto="udp", type="TXT", **zone) == 10
    assert delta("coredns_dns_requests_total", proto="tcp", type="A", **zone) == 6
    assert delta("coredns_dns_requests_total", zone="dropped", type="other") == 3
    assert delta("coredns_dns_responses_total", rcode="NOERROR", plugin="kubernetes", **zone) == 52
    assert delta("coredns_dns_responses_total", rcode="NXDOMAIN", plugin="kubernetes", **zone) == 20
    assert delta("coredns_dns_responses_total", rcode="SERVFAIL", plugin="", **zone) == 10
    assert delta("coredns_dns_responses_total") == 82
    assert delta("coredns_dns_do_requests_total", **zone) == 5
    assert delta("coredns_dns_request_duration_seconds_count", **zone) == 82
    assert delta("coredns_dns_request_duration_seconds_bucket", le="+Inf", **zone) == 82
    assert delta("coredns_dns_request_size_bytes_count", proto="udp", **zone) == 76
    assert delta("coredns_dns_request_size_bytes_count", proto="tcp", **zone) == 6
    assert delta("coredns_dns_response_size_bytes_count", proto="udp", **zone) == 76
    assert delta("coredns_dns_response_size_bytes_count", proto="tcp", **zone) == 6
    q_len = len(dns.message.make_query(NAME, "A").to_wire())
    assert delta("coredns_dns_request_size_bytes_sum", proto="tcp", **zone) == 6 * q_len
    assert value(after, "coredns_build_info") == 1
    assert value(after, "coredns_reload_failed_total") == 0
    assert value(after, "coredns_plugin_enabled", name="kubernetes", zone=".") == 1

    # both workers counted some of them (their rows of the shared segment)
    names = [n for n in os.listdir("/dev/shm") if n.startswith(f"fastdns-{sp.pid}-")
             and n.endswith("-stats")]
    assert len(names) == 1
    seg = CounterSegment.attach("/" + names[0])
    try:
        per_worker = [sum(seg.row(i)[:2]) for i in range(2)]     # C_REQ_UDP + C_REQ_TCP
    finally:
        seg.close()
    assert all(n > 0 for n in per_worker), per_worker


def test_worker_restart_keeps_totals(served: ServeProcess) -> None:
    sp = served
    for _ in range(30):
        _udp(sp, NAME, "A")
    before = scrape(sp.mport)
    total = value(before, "coredns_dns_requests_total")
    assert value(before, "fastdns_worker_restarts_total") == 0
    victim = sp.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: value(scrape(sp.mport), "fastdns_worker_restarts_total") == 1,
               what="the restart to be counted")
    wait_until(lambda: len(sp.worker_pids()) == 2 and victim not in sp.worker_pids(),
               what="the replacement worker")
    after = scrape(sp.mport)
    assert value(after, "coredns_dns_requests_total") >= total      # never backwards
    wait_until(lambda: sp.try_query(NAME, "A") is not None, what="answers after the restart")


def test_off_without_prometheus(tmp_path: Path) -> None:
    """No prometheus in the Corefile: nothing listens on 9153-like ports and the
    engine's detailed counting is off (the rows hold only the global counters)."""
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as sp:
        for _ in range(5):
            _udp(sp, NAME, "A")
        names = [n for n in os.listdir("/dev/shm") if n.startswith(f"fastdns-{sp.pid}-")]
        seg = CounterSegment.attach("/" + next(n for n in names if n.endswith("-stats")))
        try:
            row = seg.row(0)
            assert row[0] >= 5                              # C_REQ_UDP
            assert sum(row[256:]) == 0                      # no per-block sections
        finally:
            seg.close()
