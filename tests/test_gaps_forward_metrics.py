"""coredns_forward_* through real /metrics: exact counts of what the workers sent to
stub upstreams (2 workers), rcodes as the upstream gave them, durations (in seconds:
no more than the clients waited), and the coordinator's failed health checks of a dead
upstream."""

from __future__ import annotations

import os

import dns.message
import dns.query
import dns.rcode

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from fastdns.stats import CounterSegment, forward_offset
from tests.forward_support import PROBE, PROBE_BLOCK, a_addresses, ask
from tests.ops_support import scrape, value, wait_until


def test_forward_counts_per_upstream(tmp_path):
    mport = free_port()
    with StubUpstream() as good, StubUpstream("dead") as dead:
        conf = tmp_path / "Corefile"
        conf.write_text(
            PROBE_BLOCK
            + f". {{\n prometheus 127.0.0.1:{mport}\n forward . {good.hostport}\n}}\n"
            + f"dead.test {{\n forward . {dead.hostport} {{\n  read_timeout 0.5s\n"
              f"  health_check 0.2s\n  max_fails 2\n }}\n}}\n")
        with ServeProcess(conf, workers=2, probe=PROBE) as s:
            waited = 0.0                     # what the clients of the good upstream waited
            for i in range(10):
                r, took = ask(s, f"n{i}.example.")
                assert a_addresses(r) == ["192.0.2.1"]
                waited += took
            for i in range(4):
                r, took = ask(s, f"nx{i}.example.")
                assert r.rcode() == dns.rcode.NXDOMAIN
                waited += took
            for i in range(3):
                r, took = ask(s, f"fail{i}.example.")
                assert r.rcode() == dns.rcode.SERVFAIL
                waited += took
            for i in range(2):                                   # TCP client: TCP upstream
                r, took = ask(s, f"t{i}.example.", tcp=True)
                assert a_addresses(r) == ["192.0.2.1"]
                waited += took
            for name in ("a.dead.test.", "b.dead.test."):
                assert ask(s, name)[0].rcode() == dns.rcode.SERVFAIL
            assert good.count() - good.count(".") == 19
            wait_until(lambda: dead.count(".") >= 3, 20, "health probes of the dead upstream")
            m = scrape(mport)
            g, d = {"to": good.hostport}, {"to": dead.hostport}
            assert value(m, "coredns_forward_requests_total", **g) == 19
            assert value(m, "coredns_forward_responses_total", rcode="NOERROR", **g) == 12
            assert value(m, "coredns_forward_responses_total", rcode="NXDOMAIN", **g) == 4
            assert value(m, "coredns_forward_responses_total", rcode="SERVFAIL", **g) == 3
            assert value(m, "coredns_forward_request_duration_seconds_count", **g) == 19
            assert value(m, "coredns_forward_request_duration_seconds_bucket", le="+Inf", **g) == 19
            # each exchange with the upstream happened while its client waited: the sum, in
            # seconds, is more than nothing and at most what the clients waited in all
            assert 0 < value(m, "coredns_forward_request_duration_seconds_sum", **g) <= waited
            assert value(m, "coredns_forward_requests_total", **d) == 2
            assert value(m, "coredns_forward_responses_total", **d) == 0
            assert value(m, "coredns_forward_healthcheck_failures_total", **g) == 0
            # every probe the dead one received failed (one may still be waiting its timeout)
            probes = dead.count(".")
            failures = value(scrape(mport), "coredns_forward_healthcheck_failures_total", **d)
            assert probes - 1 <= failures <= dead.count(".") and failures >= 2


def test_no_forward_counting_without_prometheus(tmp_path):
    with StubUpstream() as good:
        conf = tmp_path / "Corefile"
        conf.write_text(PROBE_BLOCK + f". {{\n forward . {good.hostport}\n}}\n")
        with ServeProcess(conf, workers=1, probe=PROBE) as s:
            q = dns.message.make_query("x.example.", "A")
            assert a_addresses(dns.query.udp(q, s.host, port=s.port, timeout=3)) == ["192.0.2.1"]
            names = [n for n in os.listdir("/dev/shm") if n.startswith(f"fastdns-{s.pid}-")
                     and n.endswith("-stats")]
            assert len(names) == 1, names
            seg = CounterSegment.attach("/" + names[0])
            try:
                off = forward_offset(0)
                assert not any(seg.sum_range(off, off + 64))
            finally:
                seg.close()
