"""reload + forward: a reload that changes the forward targets rebuilds the coordinator's
health checks for the new plan (old probes stop, the new upstreams are probed, their
health reaches the workers); queries then go to the new upstreams."""

from __future__ import annotations

import os
import signal
import socket
import time

import dns.exception
import dns.message
import dns.rcode

from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import (
    PROBE,
    PROBE_BLOCK,
    a_addresses,
    ask,
    barrier_block,
    sync_workers,
    wait_until,
)

OPTS = "  policy sequential\n  read_timeout 1s\n  health_check 0.2s\n  max_fails 2\n"


def _answered_skipping(s: ServeProcess, name: str, dead: StubUpstream) -> bool:
    """Answered by the live upstream without asking the dead one first (the coordinator's
    health reached the worker: sequential order would try the dead one first)."""
    r, _ = ask(s, name)
    return a_addresses(r) == ["192.0.2.1"] and not dead.arrived(name)


def test_reload_moves_forwarding_and_health_to_the_new_upstreams(tmp_path):
    snap = tmp_path / "cluster.yaml"
    barrier = barrier_block(snap)
    with StubUpstream("dead") as old, StubUpstream("dead") as dead, StubUpstream() as live:
        conf = tmp_path / "Corefile"
        conf.write_text(PROBE_BLOCK + barrier
                        + f". {{\n forward . {old.hostport} {{\n{OPTS} }}\n}}\n")
        with ServeProcess(conf, workers=2, probe=PROBE) as s:
            assert ask(s, "before.example.")[0].rcode() == dns.rcode.SERVFAIL
            assert wait_until(lambda: old.count(".") >= 2, 10)         # old one probed
            # the new plan: a dead first upstream, then a live one (sequential)
            tmp = tmp_path / "Corefile.new"
            tmp.write_text(PROBE_BLOCK + barrier
                           + f". {{\n forward . {dead.hostport} {live.hostport} {{\n{OPTS} }}\n}}\n")
            os.replace(tmp, conf)
            os.kill(s.pid, signal.SIGHUP)
            assert wait_until(lambda: live.count(".") >= 1, 15)         # new ones probed
            # once the coordinator marks the dead one down (and every worker has applied
            # that: the barrier), workers skip it; no query reached it before, so no worker
            # skips it on account of its own failures
            assert wait_until(lambda: f"127.0.0.1:{dead.port} is down" in s.output(), 20), \
                s.output()[-2000:]
            sync_workers(s, snap, 1)
            for i in range(20):                  # from fresh source ports: both workers
                assert _answered_skipping(s, f"after{i}.example.", dead)
            n = old.count(".")
            time.sleep(3.0)              # a probe loop still running would probe 2 more times
            assert old.count(".") <= n + 1                              # old probes stopped
            assert old.count() == old.count(".") + 1                    # only before.example.


def test_a_reload_keeps_answering_queries_already_forwarded(tmp_path):
    """A query in flight to a slow upstream when a reload replaces the forward
    configuration still gets that upstream's answer (the old forwarder drains)."""
    slow_records = {("inflight.example.", "A"): ["192.0.2.77"]}
    with StubUpstream("slow", delay=6.0, records=slow_records) as slow, StubUpstream() as new:
        conf = tmp_path / "Corefile"
        opts = "  read_timeout 20s\n"
        conf.write_text(PROBE_BLOCK + f". {{\n forward . {slow.hostport} {{\n{opts} }}\n}}\n")
        with ServeProcess(conf, workers=1, probe=PROBE) as s:
            q = dns.message.make_query("inflight.example.", "A")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.sendto(q.to_wire(), (s.host, s.port))
                # forwarded (the stub answers it 6 s after it came in)
                assert wait_until(lambda: slow.arrived("inflight.example."), 10)
                tmp = tmp_path / "Corefile.new"
                tmp.write_text(PROBE_BLOCK + f". {{\n forward . {new.hostport}\n}}\n")
                os.replace(tmp, conf)
                os.kill(s.pid, signal.SIGHUP)
                # the worker runs the new plan (a fresh name goes to the new upstream) ...
                names = (f"after{i}.example." for i in range(1000))

                def on_new_plan() -> bool:
                    name = next(names)
                    try:
                        ask(s, name, timeout=1.0)
                    except dns.exception.Timeout:
                        pass
                    return new.count(name) == 1

                assert wait_until(on_new_plan, 15)
                # the new plan is in place while the first query is still unanswered
                assert slow.count("inflight.example.") == 0, "the reload came too late to test anything"
                # ... and the query sent before still gets the slow upstream's answer
                sock.settimeout(20)
                r = dns.message.from_wire(sock.recv(65535))
            finally:
                sock.close()
            assert r.id == q.id and a_addresses(r) == ["192.0.2.77"]
            assert slow.count("inflight.example.") == 1
