"""cache + forward: the shared cache across workers, TTLs, negative answers, SERVFAIL,
serve_stale, prefetch, disable."""

from __future__ import annotations

import socket
import time

import dns.flags
import dns.message
import dns.rcode

from fastdns._testing.server import udp_socket_owners
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import a_addresses, ask, serve, wait_until


def _query_from(sock: socket.socket, port: int, qname: str) -> dns.message.Message:
    q = dns.message.make_query(qname, "A")
    sock.sendto(q.to_wire(), ("127.0.0.1", port))
    sock.settimeout(3)
    data, _ = sock.recvfrom(65535)
    r = dns.message.from_wire(data)
    assert r.id == q.id
    return r


def test_answer_fetched_by_one_worker_is_a_hit_in_the_other(tmp_path):
    with StubUpstream() as up, \
            serve(tmp_path, f". {{\n cache 300\n forward . {up.hostport}\n}}\n", workers=2) as s:
        workers = s.worker_pids()
        assert len(workers) == 2
        clients: dict[int, socket.socket] = {}

        def forwarded_by(name: str) -> int:
            assert wait_until(lambda: any(n == name for n, _ in up.sources), 2)
            port = [a for n, a in up.sources if n == name][-1][1]
            owners = udp_socket_owners(port, workers)
            assert len(owners) == 1
            return owners[0]

        # SO_REUSEPORT spreads clients by source port: find one client socket per worker,
        # identified by which worker's upstream socket forwarded its (unseen) name
        for k in range(200):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind(("127.0.0.1", 0))
            name = f"which{k}.example."
            _query_from(c, s.port, name)
            pid = forwarded_by(name)
            if pid in clients:
                c.close()
            else:
                clients[pid] = c
            if len(clients) == 2:
                break
        assert len(clients) == 2
        (pa, ca), (pb, cb) = clients.items()
        try:
            r = _query_from(ca, s.port, "shared.example.")
            assert a_addresses(r) == ["192.0.2.1"] and up.count("shared.example.") == 1
            assert forwarded_by("shared.example.") == pa
            r = _query_from(cb, s.port, "Shared.Example.")       # worker B: from the cache
            assert a_addresses(r) == ["192.0.2.1"]
            assert r.question[0].name.to_text() == "Shared.Example."
            assert up.count("shared.example.") == 1
            _query_from(cb, s.port, "still-b.example.")           # cb still reaches worker B
            assert forwarded_by("still-b.example.") == pb
        finally:
            ca.close()
            cb.close()


def test_ttl_capped_and_decremented_and_do_bit_splits(tmp_path):
    with StubUpstream(ttl=300) as up, \
            serve(tmp_path, f". {{\n cache 30\n forward . {up.hostport}\n}}\n") as s:
        r1, _ = ask(s, "ttl.example.")
        assert r1.answer[0].ttl == 30                          # capped by `cache 30`
        time.sleep(2.1)
        r2, took = ask(s, "ttl.example.")
        assert 27 <= r2.answer[0].ttl <= 28 and took < 0.1
        assert up.count("ttl.example.") == 1
        r3, _ = ask(s, "ttl.example.", want_dnssec=True)       # DO=1: another cache key
        assert r3.flags & dns.flags.RA and up.count("ttl.example.") == 2


def test_negative_answers_cached_by_soa_minimum(tmp_path):
    with StubUpstream(soa_ttl=3600, soa_minimum=60) as up:
        conf = (f". {{\n cache {{\n  disable denial nocache.example\n }}\n"
                f" forward . {up.hostport}\n}}\n")
        with serve(tmp_path, conf) as s:
            for name, rcode in (("nx-a.example.", dns.rcode.NXDOMAIN),
                                ("nodata-a.example.", dns.rcode.NOERROR)):
                r1, _ = ask(s, name)
                assert r1.rcode() == rcode and not r1.answer
                assert r1.authority[0].ttl == 60                # min(SOA TTL, SOA MINIMUM)
                time.sleep(1.1)
                r2, _ = ask(s, name)
                assert r2.rcode() == rcode and 55 <= r2.authority[0].ttl <= 59   # decremented (whole seconds; slack for a loaded machine)
                assert up.count(name) == 1
            for _ in range(2):
                assert ask(s, "nx.nocache.example.")[0].rcode() == dns.rcode.NXDOMAIN
            assert up.count("nx.nocache.example.") == 2         # `disable denial` zone


def test_servfail_cached_briefly(tmp_path):
    with StubUpstream() as up, \
            serve(tmp_path, f". {{\n cache {{\n  servfail 2s\n }}\n forward . {up.hostport}\n}}\n") as s:
        for _ in range(3):
            assert ask(s, "fail.example.")[0].rcode() == dns.rcode.SERVFAIL
        assert up.count("fail.example.") == 1
        time.sleep(2.2)
        assert ask(s, "fail.example.")[0].rcode() == dns.rcode.SERVFAIL
        assert up.count("fail.example.") == 2


def test_serve_stale_while_upstream_is_down(tmp_path):
    with StubUpstream(ttl=1) as up:
        conf = (f". {{\n cache {{\n  success 1000 60 1\n  serve_stale 60s\n }}\n"
                f" forward . {up.hostport} {{\n  read_timeout 0.5s\n  health_check 0\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            r, _ = ask(s, "stale.example.")
            assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 1
            up.paused = True                                     # the upstream goes dark
            time.sleep(2.1)
            for _ in range(3):
                r, took = ask(s, "stale.example.")
                assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 0
                assert took < 0.2                                # not waiting for upstream
                time.sleep(0.7)                                  # let the refresh fail
            assert up.count("stale.example.") >= 2               # refreshes were attempted
            up.paused = False
            assert wait_until(lambda: ask(s, "stale.example.")[0].answer[0].ttl == 1, 3)


def test_prefetch_refreshes_popular_entries_before_expiry(tmp_path):
    with StubUpstream(ttl=4) as up:
        conf = (f". {{\n cache {{\n  success 1000 60 1\n  prefetch 2 1m 50%\n }}\n"
                f" forward . {up.hostport}\n}}\n")
        with serve(tmp_path, conf) as s:
            for _ in range(3):                                   # 1 miss + 2 hits
                ask(s, "hot.example.")
            ask(s, "cold.example.")                              # 1 miss, no hits
            assert up.count("hot.example.") == 1
            assert wait_until(lambda: up.count("hot.example.") == 2, 4)   # refreshed alone
            assert wait_until(lambda: ask(s, "hot.example.")[0].answer[0].ttl >= 3, 1)  # fresh
            time.sleep(1.0)
            assert up.count("cold.example.") == 1
