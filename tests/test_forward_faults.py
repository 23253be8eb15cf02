"""forward under faults: dead, refused, slow, lying upstreams; health checks; loops."""

from __future__ import annotations

import time

import dns.message
import dns.query
import dns.rcode
import dns.rrset

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import PROBE_BLOCK, a_addresses, ask, serve, wait_until


def liar_answer(q: dns.message.Message) -> dns.message.Message:
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "6.6.6.6"))
    return r


def test_dead_upstream_servfail_after_read_timeout(tmp_path):
    with StubUpstream("dead") as up, serve(
            tmp_path, PROBE_BLOCK + f". {{\n forward . {up.hostport} {{\n  read_timeout 1s\n }}\n}}\n") as s:
        r, took = ask(s, "dead.example.")
        assert r.rcode() == dns.rcode.SERVFAIL
        assert 0.9 < took < 2.0
        assert up.count("dead.example.") == 1


def test_refused_port_fails_fast(tmp_path):
    port = free_port()                      # nothing listens: ICMP port unreachable
    with serve(tmp_path, PROBE_BLOCK + f". {{\n forward . 127.0.0.1:{port}\n}}\n") as s:
        r, took = ask(s, "nobody.example.")
        assert r.rcode() == dns.rcode.SERVFAIL
        assert took < 0.5                   # not the 2 s read timeout


def test_slow_upstream_times_out_and_next_one_answers(tmp_path):
    with StubUpstream("slow", delay=3.0) as slow, StubUpstream() as good:
        conf = (f"slow.test {{\n forward . {slow.hostport} {{\n  health_check 0\n }}\n}}\n"
                f". {{\n forward . {slow.hostport} {good.hostport} {{\n  policy sequential\n"
                f"  health_check 0\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            r, took = ask(s, "x.slow.test.")          # only the slow one: SERVFAIL at 2 s
            assert r.rcode() == dns.rcode.SERVFAIL and 1.9 < took < 2.9
            r, took = ask(s, "late.example.")         # slow first (2 s timeout), then good
            assert a_addresses(r) == ["192.0.2.1"] and 1.9 < took < 2.9
            assert good.count("late.example.") == 1
            assert wait_until(lambda: slow.count("late.example.") == 1, 2)   # logged on answering


def test_lying_upstreams_are_ignored_and_never_cached(tmp_path):
    with StubUpstream("wrong_id", handler=liar_answer) as bad_id, \
            StubUpstream("wrong_question", handler=liar_answer) as bad_q, StubUpstream() as good:
        conf = (f". {{\n cache 300\n forward . {bad_id.hostport} {bad_q.hostport} {good.hostport} {{\n"
                f"  policy sequential\n  read_timeout 0.5s\n  health_check 0\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            r, took = ask(s, "www.example.")
            assert a_addresses(r) == ["192.0.2.1"]        # the lies (6.6.6.6) were ignored
            assert bad_id.count("www.example.") == 1 and bad_q.count("www.example.") == 1
            assert 0.9 < took < 1.6                      # two read timeouts
            r, took = ask(s, "www.example.")             # cached: the true answer
            assert a_addresses(r) == ["192.0.2.1"] and took < 0.2
            # the wrong question's name ("qww.example.") was not cached from the lie
            r, _ = ask(s, "qww.example.")
            assert a_addresses(r) == ["192.0.2.1"] and good.count("qww.example.") == 1


def test_one_of_two_dead_p99_after_health_check(tmp_path):
    with StubUpstream("dead") as dead, StubUpstream() as good:
        conf = (f". {{\n forward . {dead.hostport} {good.hostport} {{\n  health_check 0.2s\n"
                f"  max_fails 2\n }}\n}}\n")
        with serve(tmp_path, conf, workers=2) as s:
            # the coordinator probes every 0.2 s: two failures mark the dead one down
            assert wait_until(lambda: dead.count(".") >= 3, 5)
            time.sleep(0.3)
            lat = []
            for i in range(300):
                r, took = ask(s, f"n{i}.example.")
                assert a_addresses(r) == ["192.0.2.1"]
                lat.append(took)
            lat.sort()
            p99 = lat[int(len(lat) * 0.99) - 1]
            assert p99 < 0.010, f"p99 {p99 * 1e3:.1f} ms"
            assert not any(dead.count(f"n{i}.example.") for i in range(300))


def test_recovered_upstream_is_used_again(tmp_path):
    with StubUpstream() as a, StubUpstream() as b:
        conf = (f". {{\n forward . {a.hostport} {b.hostport} {{\n  health_check 0.2s\n"
                f"  max_fails 1\n  policy sequential\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            a.paused = True                                # a stops answering
            assert wait_until(lambda: a.count(".") >= 2, 5)
            time.sleep(1.5)                                # a probe times out after 1 s
            n = a.count("one.example.")
            r, took = ask(s, "one.example.")
            assert a_addresses(r) == ["192.0.2.1"] and took < 0.5 and b.count("one.example.") == 1
            assert a.count("one.example.") == n
            a.paused = False                               # answers again: back to first
            time.sleep(1.8)                                # the next probe answers
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
        assert wait_until(lambda: any(q == 13 for _, q, _ in up.log), 5)
        time.sleep(0.5)
        r, _ = ask(s, "still.example.")
        assert a_addresses(r) == ["192.0.2.1"]
