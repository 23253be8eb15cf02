"""The forwarding miss path in C (fastdns/_loop_forward.pxi), against real peers.

What the C forwarder must do that the Python one did, plus what it does better: a
fresh random source port per upstream query, closed once answered; coalescing that
answers every waiter with its own ID and spelling; the same cache decisions as the
Python forwarder's policy (the two are run side by side on the same upstream answers);
and bounded resources under a flood of unique names to a dead upstream.
"""

from __future__ import annotations

import os
import socket
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import PROBE, PROBE_BLOCK, a_addresses, ask, serve, wait_until


def _udp_sockets(pid: int) -> int:
    """UDP sockets process ``pid`` holds (its fds whose inode is in /proc/net/udp{,6})."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            next(f)
            inodes |= {line.split()[9] for line in f}
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def test_every_upstream_query_has_its_own_random_port_closed_after(tmp_path):
    with StubUpstream() as up, \
            serve(tmp_path, f". {{\n forward . {up.hostport}\n}}\n") as s:
        (pid,) = s.worker_pids()
        before = _udp_sockets(pid)
        names = [f"port{i}.example." for i in range(200)]
        for n in names:
            r, _ = ask(s, n)
            assert a_addresses(r) == ["192.0.2.1"]
        ports = [addr[1] for name, addr in up.sources if name in set(names)]
        assert len(ports) == 200
        # the kernel picks each port at random from ~28k: 200 draws repeat a few at most
        assert len(set(ports)) >= 190, sorted(ports)
        # consecutive queries do not walk the port range (as a counter would)
        steps = [abs(a - b) for a, b in zip(ports, ports[1:])]
        assert sum(1 for d in steps if d <= 2) < 10, steps
        # every socket closed once its answer came: no more UDP sockets than before
        assert wait_until(lambda: _udp_sockets(pid) <= before, 5), (_udp_sockets(pid), before)


def test_coalesced_waiters_get_their_own_id_case_and_size(tmp_path):
    many = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(40)]      # 40 A: > 512 bytes
    with StubUpstream("slow", delay=0.6, records={("same.example.", "A"): many}) as up, \
            serve(tmp_path, f". {{\n forward . {up.hostport}\n}}\n") as s:
        socks, queries = [], []
        spellings = ["same.example.", "SAME.example.", "Same.Example.", "sAmE.eXaMpLe."]
        for k in range(12):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(5)
            # some ask with EDNS (room for every record), some without (512 bytes: TC)
            q = dns.message.make_query(spellings[k % 4], "A", use_edns=0 if k % 2 else -1,
                                       payload=1232)
            c.sendto(q.to_wire(), (s.host, s.port))
            socks.append(c)
            queries.append(q)
        try:
            for c, q in zip(socks, queries):
                r = dns.message.from_wire(c.recvfrom(65535)[0])
                assert r.id == q.id
                assert r.question[0].name.to_text() == q.question[0].name.to_text()
                if q.edns >= 0:
                    assert not r.flags & dns.flags.TC and len(a_addresses(r)) == 40
                else:
                    assert r.flags & dns.flags.TC           # did not fit 512 bytes
        finally:
            for c in socks:
                c.close()
        assert up.count("same.example.", "udp") == 1   # one upstream query for all twelve


def _answers(s: ServeProcess, cases: list[tuple[str, str]]) -> list[dns.message.Message]:
    out = []
    for name, qtype in cases:
        r, _ = ask(s, name, qtype)
        out.append(r)
        r2, _ = ask(s, name, qtype)                     # the second: from the cache
        out.append(r2)
    return out


def _zone(q: dns.message.Message) -> dns.message.Message | None:
    """Upstream answers the cache must classify: several TTLs, a delegation, a CNAME."""
    name = q.question[0].name.to_text().lower()
    r = dns.message.make_response(q)
    if name == "multi.example.":
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.7"))
        r.authority.append(dns.rrset.from_text("example.", 40, "IN", "NS", "ns.example."))
    elif name == "deleg.example.":
        r.authority.append(dns.rrset.from_text("deleg.example.", 90, "IN", "NS", "ns.deleg.example."))
    elif name == "alias.example.":
        r.answer.append(dns.rrset.from_text(q.question[0].name, 500, "IN", "CNAME", "t.example."))
        r.answer.append(dns.rrset.from_text("t.example.", 20, "IN", "A", "192.0.2.8"))
    elif name == "refused.example.":
        r.set_rcode(dns.rcode.REFUSED)
    else:
        return None
    return r


CASES = [("a.example.", "A"), ("nxname.example.", "A"), ("nodata.example.", "A"),
         ("failing.example.", "A"), ("multi.example.", "A"), ("deleg.example.", "A"),
         ("alias.example.", "A"), ("refused.example.", "A"), ("a.example.", "AAAA"),
         ("nomin.example.", "TXT")]


@pytest.mark.parametrize("cache", ["cache 30", "cache 600 {\n  success 100 3600 100\n  "
                                   "denial 100 7 3\n }",
                                   "cache {\n  disable success example.\n }"])
def test_cache_decisions_match_the_python_forwarder(tmp_path, cache):
    """The C path's TTLs, rcodes and what it caches equal the Python forwarder's for the
    same upstream answers (which tests/test_cache_fill.py checks against CoreDNS's)."""
    got = {}
    for which in ("c", "python"):
        with StubUpstream(ttl=120, soa_ttl=60, soa_minimum=30, handler=_zone) as up:
            d = tmp_path / which
            d.mkdir()
            env = {"FASTDNS_PYTHON_FORWARD": "1" if which == "python" else None}
            core = d / "Corefile"
            core.write_text(PROBE_BLOCK + f". {{\n {cache}\n forward . {up.hostport}\n}}\n")
            with ServeProcess(core, workers=1, env=env, probe=("x.invalid.", "A")) as s:
                rs = _answers(s, CASES)
            got[which] = ([(r.rcode(), sorted((rr.name.to_text(), rr.rdtype, rr.ttl)
                                              for sec in (r.answer, r.authority) for rr in sec))
                           for r in rs], sorted(up.names().items()))
    (c_answers, c_names), (py_answers, py_names) = got["c"], got["python"]
    assert c_names == py_names                          # the same queries went upstream
    assert len(c_answers) == len(py_answers)
    for k, (a, b) in enumerate(zip(c_answers, py_answers)):
        assert a[0] == b[0] and len(a[1]) == len(b[1]), (k, a, b)
        for (na, ta, ttl_a), (nb, tb, ttl_b) in zip(a[1], b[1]):
            assert (na, ta) == (nb, tb), (k, a, b)
            # an answer from the cache may be a second older in one of the two runs
            assert abs(ttl_a - ttl_b) <= (1 if k % 2 else 0), (k, a, b)
    rcodes = [rc for rc, _ in c_answers]
    assert dns.rcode.NXDOMAIN in rcodes and dns.rcode.SERVFAIL in rcodes   # the table ran


def test_flood_to_a_dead_upstream_stays_bounded_and_other_blocks_serve(tmp_path):
    """Unique names at a dead upstream: sockets stay under the limit, every client gets
    SERVFAIL after the read timeout, and a healthy block's answers never stop."""
    with StubUpstream("dead") as dead, StubUpstream() as good, \
            serve(tmp_path, f"dead.test {{\n forward . {dead.hostport} {{\n  read_timeout 1s\n"
                            f" }}\n}}\n. {{\n forward . {good.hostport}\n}}\n") as s:
        (pid,) = s.worker_pids()
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        flood.setblocking(False)
        sent = servfail = healthy = 0

        def drain() -> int:
            n = 0
            while True:
                try:
                    data = flood.recv(4096)
                except (BlockingIOError, InterruptedError):
                    return n
                if dns.message.from_wire(data).rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                    n += 1

        for _ in range(30):             # rounds, not seconds: no speed is assumed
            for _ in range(200):
                q = dns.message.make_query(f"n{sent}.dead.test.", "A")
                try:
                    flood.sendto(q.to_wire(), (s.host, s.port))
                    sent += 1
                except BlockingIOError:
                    break
            servfail += drain()
            r, _ = ask(s, f"ok{healthy}.example.", timeout=5)
            assert a_addresses(r) == ["192.0.2.1"]
            healthy += 1
            assert _udp_sockets(pid) < 4096 + 64
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while servfail < sent and time.monotonic() < deadline:
            servfail += drain()
            time.sleep(0.05)
        flood.close()
        assert healthy == 30 and sent > 1000
        assert servfail >= sent * 0.9, (servfail, sent)     # answered, not dropped
        assert wait_until(lambda: _udp_sockets(pid) <= 8, 10), _udp_sockets(pid)


def test_max_concurrent_refuses_past_the_limit_and_says_so(tmp_path):
    """CoreDNS's ``max_concurrent``: past the limit of queries waiting on upstreams, new
    ones are REFUSED (and the errors plugin says why); a question already in flight
    joins it and is not refused."""
    with StubUpstream("slow", delay=1.0) as up, \
            serve(tmp_path, f". {{\n errors\n forward . {up.hostport} {{\n  max_concurrent 5\n"
                            f" }}\n}}\n") as s:
        socks = []
        for k in range(10):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(5)
            c.sendto(dns.message.make_query(f"mc{k}.example.", "A").to_wire(), (s.host, s.port))
            socks.append(c)
            time.sleep(0.02)            # in this order: the first five wait upstream
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(5)
        c.sendto(dns.message.make_query("MC0.example.", "A").to_wire(), (s.host, s.port))
        socks.append(c)                 # the same question as the first: joins its flight
        rcodes = []
        for c in socks:
            rcodes.append(dns.message.from_wire(c.recvfrom(4096)[0]).rcode())
            c.close()
        assert rcodes[:5] == [dns.rcode.NOERROR] * 5
        assert rcodes[5:10] == [dns.rcode.REFUSED] * 5
        assert rcodes[10] == dns.rcode.NOERROR
        assert sum(up.count(f"mc{k}.example.") for k in range(10)) == 5
        assert wait_until(lambda: "concurrent queries exceeded maximum 5" in s.output(), 5), \
            s.output()[-2000:]


@pytest.mark.parametrize("tcp", [False, True], ids=["c-path", "python-path"])
def test_failover_rcode_moves_on_to_the_next_upstream(tmp_path, tcp):
    """``failover SERVFAIL``: an upstream's SERVFAIL sends the query to the next one
    (``policy sequential``: in order); without a next one, its answer is the answer."""
    def good(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.44"))
        return r

    with StubUpstream() as first, StubUpstream(handler=good) as second, \
            serve(tmp_path, f". {{\n forward . {first.hostport} {second.hostport} {{\n"
                            f"  policy sequential\n  failover SERVFAIL\n }}\n}}\n") as s:
        r, _ = ask(s, "failing.example.", tcp=tcp)      # the first stub: SERVFAIL for fail*
        assert r.rcode() == dns.rcode.NOERROR and a_addresses(r) == ["192.0.2.44"]
        assert first.count("failing.example.") == 1 and second.count("failing.example.") == 1
        r, _ = ask(s, "plain.example.", tcp=tcp)        # the first answers: no failover
        assert a_addresses(r) == ["192.0.2.1"] and second.count("plain.example.") == 0
    with StubUpstream() as only, \
            serve(tmp_path, f". {{\n forward . {only.hostport} {{\n  failover SERVFAIL\n }}\n}}\n",
                  name="Corefile2") as s:
        r, _ = ask(s, "failing.example.", tcp=tcp)
        assert r.rcode() == dns.rcode.SERVFAIL and only.count("failing.example.") == 1


@pytest.mark.parametrize("path", ["c", "python"])
def test_max_concurrent_is_one_limit_across_workers(tmp_path, path):
    """60 unique names from 60 client sockets (SO_REUSEPORT spreads them over both
    workers) to a slow upstream with ``max_concurrent 10``: about 10 are let through
    in all (a limit per worker would let ~20 through), the rest REFUSED, and
    coredns_forward_max_concurrent_rejects_total counts every refusal.  Once the
    answers came the gauge is back to 0: the next 10 pass again."""
    from fastdns._testing.server import free_port
    from tests.ops_support import scrape, value

    mport = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(PROBE_BLOCK + f". {{\n prometheus 127.0.0.1:{mport}\n forward . UP {{\n"
                    f"  max_concurrent 10\n }}\n}}\n")
    env = {"FASTDNS_PYTHON_FORWARD": "1" if path == "python" else None}
    with StubUpstream("slow", delay=1.5) as up:
        conf.write_text(conf.read_text().replace("UP", up.hostport))
        with ServeProcess(conf, workers=2, probe=PROBE, env=env) as s:
            refused_all = 0
            for burst in range(2):
                socks = []
                for k in range(60):
                    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    c.settimeout(10)
                    c.sendto(dns.message.make_query(f"w{burst}-{k}.example.", "A").to_wire(),
                             (s.host, s.port))
                    socks.append(c)
                rcodes = []
                for c in socks:
                    rcodes.append(dns.message.from_wire(c.recvfrom(4096)[0]).rcode())
                    c.close()
                passed = rcodes.count(dns.rcode.NOERROR)
                refused = rcodes.count(dns.rcode.REFUSED)
                assert passed + refused == 60
                # two workers may both take the 10th place at once: one more at most
                assert 10 <= passed <= 11, (burst, passed)
                refused_all += refused
                assert wait_until(lambda: value(scrape(mport),
                                                "coredns_forward_max_concurrent_rejects_total")
                                  == refused_all, 10), (refused_all, scrape(mport))


@pytest.mark.parametrize("path", ["c", "python"])
def test_use_caps_for_id_randomizes_case_and_checks_it(tmp_path, path):
    """``use_caps_for_id`` (0x20): each UDP query goes up with its letters' case drawn
    at random and an answer must carry the name back in that case; the client still
    gets its own spelling.  An upstream that lower-cases the question in its answers
    is then not believed (SERVFAIL), as a forger that does not know the case is not."""
    env = {"FASTDNS_PYTHON_FORWARD": "1" if path == "python" else None}
    conf = (". {{\n forward . {up} {{\n  use_caps_for_id\n  read_timeout 0.3s\n }}\n}}\n")
    with StubUpstream() as up, ServeProcess(_write(tmp_path, conf.format(up=up.hostport)),
                                            workers=1, probe=PROBE,
                                            env=env) as s:
        for i in range(30):
            r, _ = ask(s, f"abcdefghijklmnop{i}.example.")
            assert a_addresses(r) == ["192.0.2.1"]
            assert r.question[0].name.to_text() == f"abcdefghijklmnop{i}.example."
        sent = [name for name in up.log_raw if name.lower().startswith("abcdefghijklmnop")]
        assert len(sent) == 30
        mixed = [n for n in sent if n != n.lower()]
        assert len(mixed) >= 25, sent           # 23 letters each: all-lower is ~1 in 8M

    def lower(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.question[0].name = dns.name.from_text(q.question[0].name.to_text().lower())
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.9"))
        return r
    with StubUpstream(handler=lower) as up, \
            ServeProcess(_write(tmp_path, conf.format(up=up.hostport)), workers=1,
                         probe=PROBE, env=env) as s:
        r, _ = ask(s, "mixed.example.")
        assert r.rcode() == dns.rcode.SERVFAIL
    plain = conf.replace("  use_caps_for_id\n", "")
    with StubUpstream(handler=lower) as up, \
            ServeProcess(_write(tmp_path, plain.format(up=up.hostport)), workers=1,
                         probe=PROBE, env=env) as s:
        r, _ = ask(s, "mixed.example.")
        assert a_addresses(r) == ["192.0.2.9"]


@pytest.mark.parametrize("path", ["c", "python"])
def test_source_address_is_where_upstream_queries_come_from(tmp_path, path):
    """``source_address 127.0.0.2``: the upstream sees UDP and TCP queries from it."""
    env = {"FASTDNS_PYTHON_FORWARD": "1" if path == "python" else None}
    with StubUpstream() as up:
        conf = (f". {{\n forward . {up.hostport} {{\n  source_address 127.0.0.2\n }}\n}}\n"
                f"tcp.example {{\n forward . {up.hostport} {{\n  force_tcp\n"
                f"  source_address 127.0.0.3\n }}\n}}\n")
        with ServeProcess(_write(tmp_path, conf), workers=1, probe=PROBE,
                          env=env) as s:
            r, _ = ask(s, "src.example.")
            assert a_addresses(r) == ["192.0.2.1"]
            r, _ = ask(s, "a.tcp.example.")
            assert a_addresses(r) == ["192.0.2.1"]
        assert [a[0] for n, a in up.sources if n == "src.example."] == ["127.0.0.2"]
        assert up.tcp_peers and {p[0] for p in up.tcp_peers} == {"127.0.0.3"}, up.tcp_peers


def _write(tmp_path, text: str):
    p = tmp_path / "Corefile"
    p.write_text(PROBE_BLOCK + text)
    return p
