"""forward under faults: dead, refused, slow, lying upstreams; health checks; loops."""

from __future__ import annotations

import time

import dns.message
import dns.query
import dns.rcode
import dns.rrset

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import (
    BARRIER_NAME,
    PROBE_BLOCK,
    a_addresses,
    ask,
    barrier_block,
    serve,
    sync_workers,
    wait_until,
)


def liar_answer(q: dns.message.Message) -> dns.message.Message:
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "6.6.6.6"))
    return r


def test_dead_upstream_servfail_after_read_timeout(tmp_path):
    with StubUpstream("dead") as up, serve(
            tmp_path, PROBE_BLOCK + f". {{\n forward . {up.hostport} {{\n  read_timeout 0.3s\n }}\n}}\n") as s:
        r, took = ask(s, "dead.example.", timeout=10)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert took >= 0.3                  # not before the configured read timeout ...
        assert took < 1.9                   # ... and that one, not the 2 s default
        assert up.count("dead.example.") == 1


def test_refused_port_fails_fast(tmp_path):
    port = free_port()                      # nothing listens: ICMP port unreachable
    with serve(tmp_path, PROBE_BLOCK + f". {{\n forward . 127.0.0.1:{port} {{\n"
                                       f"  read_timeout 60s\n }}\n}}\n") as s:
        # answered within the client's 10 s although the read timeout is 60 s: the
        # refusal (ICMP) ended the exchange, and the server says so
        r, _ = ask(s, "nobody.example.", timeout=10)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert wait_until(lambda: f"127.0.0.1:{port}: read: connection refused" in s.output(), 10), \
            s.output()[-2000:]
        assert "i/o timeout" not in s.output()


def test_slow_upstream_times_out_and_next_one_answers(tmp_path):
    # the slow one answers after 8 s, and with another address than the good one: an
    # answer that waited for it would say so
    slow_says = {("x.slow.test.", "A"): ["192.0.2.66"], ("late.example.", "A"): ["192.0.2.66"]}
    with StubUpstream("slow", delay=8.0, records=slow_says) as slow, StubUpstream() as good:
        conf = (f"slow.test {{\n forward . {slow.hostport} {{\n  health_check 0\n }}\n}}\n"
                f". {{\n forward . {slow.hostport} {good.hostport} {{\n  policy sequential\n"
                f"  health_check 0\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            r, took = ask(s, "x.slow.test.", timeout=10)   # only the slow one: SERVFAIL at 2 s
            assert r.rcode() == dns.rcode.SERVFAIL          # gave up: did not wait for its answer
            assert took >= 2.0                              # after the 2 s read timeout
            assert len(slow.arrived("x.slow.test.")) == 1   # asked once, not again
            r, took = ask(s, "late.example.", timeout=10)  # slow first (2 s timeout), then good
            assert a_addresses(r) == ["192.0.2.1"]          # the good one's answer
            assert took >= 2.0
            (asked_slow,), (asked_good,) = slow.arrived("late.example."), good.arrived("late.example.")
            assert asked_slow < asked_good                  # in policy order
            assert good.count("late.example.") == 1


def test_lying_upstreams_are_ignored_and_never_cached(tmp_path):
    with StubUpstream("wrong_id", handler=liar_answer) as bad_id, \
            StubUpstream("wrong_question", handler=liar_answer) as bad_q, StubUpstream() as good:
        conf = (f". {{\n cache 300\n forward . {bad_id.hostport} {bad_q.hostport} {good.hostport} {{\n"
                f"  policy sequential\n  read_timeout 0.5s\n  health_check 0\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            r, took = ask(s, "www.example.")
            assert a_addresses(r) == ["192.0.2.1"]        # the lies (6.6.6.6) were ignored
            assert bad_id.count("www.example.") == 1 and bad_q.count("www.example.") == 1
            assert good.count("www.example.") == 1
            # in policy order, each lie waited out to its read timeout (not taken as an answer)
            assert bad_id.arrived("www.example.") < bad_q.arrived("www.example.") \
                < good.arrived("www.example.")
            assert took >= 1.0                           # two read timeouts of 0.5 s
            r, _ = ask(s, "www.example.")                # cached: the true answer
            assert a_addresses(r) == ["192.0.2.1"]
            assert good.count("www.example.") == 1       # from the cache: no upstream asked
            assert bad_id.count("www.example.") == 1 and bad_q.count("www.example.") == 1
            # the wrong question's name ("qww.example.") was not cached from the lie
            r, _ = ask(s, "qww.example.")
            assert a_addresses(r) == ["192.0.2.1"] and good.count("qww.example.") == 1


def test_one_of_two_dead_is_skipped_after_the_health_check(tmp_path):
    """Once the coordinator's health checks mark the first upstream down, no query waits
    for it: every one goes straight to the second (sequential order would ask the
    dead one first, and wait its read timeout, on a worker that had not heard)."""
    snap = tmp_path / "cluster.yaml"
    with StubUpstream("dead") as dead, StubUpstream() as good:
        conf = (barrier_block(snap)
                + f". {{\n forward . {dead.hostport} {good.hostport} {{\n  policy sequential\n"
                  f"  health_check 0.2s\n  max_fails 2\n }}\n}}\n")
        with serve(tmp_path, conf, workers=2, probe=(BARRIER_NAME, "A")) as s:
            # the coordinator probes every 0.2 s: two failures mark the dead one down
            assert wait_until(lambda: f"127.0.0.1:{dead.port} is down" in s.output(), 20), \
                s.output()[-2000:]
            sync_workers(s, snap, 1)                 # ... and both workers have heard it
            names = [f"n{i}.example." for i in range(300)]
            for name in names:
                r, _ = ask(s, name)
                assert a_addresses(r) == ["192.0.2.1"]
            assert not any(dead.arrived(name) for name in names)
            assert all(good.count(name) == 1 for name in names)


def test_recovered_upstream_is_used_again(tmp_path):
    snap = tmp_path / "cluster.yaml"
    with StubUpstream() as a, StubUpstream() as b:
        conf = (barrier_block(snap)
                + f". {{\n forward . {a.hostport} {b.hostport} {{\n  health_check 0.2s\n"
                  f"  max_fails 1\n  policy sequential\n }}\n}}\n")
        with serve(tmp_path, conf, probe=(BARRIER_NAME, "A")) as s:
            a.paused = True                                # a stops answering
            assert wait_until(lambda: f"127.0.0.1:{a.port} is down" in s.output(), 20), \
                s.output()[-2000:]
            sync_workers(s, snap, 1)
            r, _ = ask(s, "one.example.")
            assert a_addresses(r) == ["192.0.2.1"] and b.count("one.example.") == 1
            assert not a.arrived("one.example.")           # a, first in order, was skipped
            a.paused = False                               # answers again: back to first
            assert wait_until(lambda: f"127.0.0.1:{a.port} is up again" in s.output(), 20), \
                s.output()[-2000:]
            sync_workers(s, snap, 2)
            ask(s, "two.example.")
            assert a.count("two.example.") == 1 and b.count("two.example.") == 0


def test_loop_is_detected_and_stops_the_server(tmp_path):
    port = free_port()
    cf = tmp_path / "Corefile"
    cf.write_text(f".:{port} {{\n loop\n forward . 127.0.0.1:{port}\n}}\n")
    p = ServeProcess(cf, workers=2, port=port)
    code, out = p.run_to_exit(30)
    assert code != 0
    assert "Loop (-> 127.0.0.1:" in out and 'detected for zone "."' in out
    assert "HINFO" in out


def test_no_loop_when_upstream_answers(tmp_path):
    with StubUpstream() as up, serve(tmp_path, f". {{\n loop\n forward . {up.hostport}\n}}\n",
                                     workers=2) as s:
        assert wait_until(lambda: any(q == 13 for _, q, _ in up.log), 20)
        time.sleep(0.5)
        r, _ = ask(s, "still.example.")
        assert a_addresses(r) == ["192.0.2.1"]
