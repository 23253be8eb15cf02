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
from tests.forward_support import a_addresses, aged_ttl, ask, serve, wait_until


def _send(sock: socket.socket, port: int, qname: str) -> dns.message.Message:
    q = dns.message.make_query(qname, "A")
    sock.sendto(q.to_wire(), ("127.0.0.1", port))
    return q


def _receive(sock: socket.socket, q: dns.message.Message) -> dns.message.Message:
    sock.settimeout(5)
    data, _ = sock.recvfrom(65535)
    r = dns.message.from_wire(data)
    assert r.id == q.id
    return r


def _query_from(sock: socket.socket, port: int, qname: str) -> dns.message.Message:
    return _receive(sock, _send(sock, port, qname))


def test_answer_fetched_by_one_worker_is_a_hit_in_the_other(tmp_path):
    # the upstream holds each answer 0.5 s: every upstream query has a socket (and a
    # random port) of its own, open only until its answer, so that is when its owner shows
    with StubUpstream("slow", delay=0.5) as up, \
            serve(tmp_path, f". {{\n cache 300\n forward . {up.hostport}\n}}\n", workers=2) as s:
        workers = s.worker_pids()
        assert len(workers) == 2
        clients: dict[int, socket.socket] = {}

        def ask_which(sock: socket.socket, name: str) -> tuple[int, dns.message.Message]:
            """Ask ``name`` (not cached yet) and tell which worker forwarded it."""
            q = _send(sock, s.port, name)
            assert wait_until(lambda: any(n == name.lower() for n, _ in up.sources), 10)
            port = [a for n, a in up.sources if n == name.lower()][-1][1]
            owners = udp_socket_owners(port, workers)
            assert len(owners) == 1
            return owners[0], _receive(sock, q)

        # SO_REUSEPORT spreads clients by source port: find one client socket per worker,
        # identified by which worker's upstream socket forwarded its (unseen) name
        for k in range(200):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind(("127.0.0.1", 0))
            pid, _ = ask_which(c, f"which{k}.example.")
            if pid in clients:
                c.close()
            else:
                clients[pid] = c
            if len(clients) == 2:
                break
        assert len(clients) == 2
        (pa, ca), (pb, cb) = clients.items()
        try:
            pid, r = ask_which(ca, "shared.example.")
            assert a_addresses(r) == ["192.0.2.1"] and up.count("shared.example.") == 1
            assert pid == pa
            r = _query_from(cb, s.port, "Shared.Example.")       # worker B: from the cache
            assert a_addresses(r) == ["192.0.2.1"]
            assert r.question[0].name.to_text() == "Shared.Example."
            assert up.count("shared.example.") == 1
            pid, _ = ask_which(cb, "still-b.example.")           # cb still reaches worker B
            assert pid == pb
        finally:
            ca.close()
            cb.close()


def test_ttl_capped_and_decremented_and_do_bit_splits(tmp_path):
    with StubUpstream(ttl=300) as up, \
            serve(tmp_path, f". {{\n cache 30\n forward . {up.hostport}\n}}\n") as s:
        sent1 = time.monotonic()
        r1, _ = ask(s, "ttl.example.")
        got1 = time.monotonic()
        assert r1.answer[0].ttl == 30                          # capped by `cache 30`
        time.sleep(2.1)
        sent2 = time.monotonic()
        r2, _ = ask(s, "ttl.example.")
        got2 = time.monotonic()
        assert up.count("ttl.example.") == 1                   # a hit: the upstream was not asked
        assert r2.answer[0].ttl in aged_ttl(30, sent2 - got1, got2 - sent1)   # decremented
        assert r2.answer[0].ttl <= 28
        r3, _ = ask(s, "ttl.example.", want_dnssec=True)       # DO=1: another cache key
        assert r3.flags & dns.flags.RA and up.count("ttl.example.") == 2


def test_negative_answers_cached_by_soa_minimum(tmp_path):
    with StubUpstream(soa_ttl=3600, soa_minimum=60) as up:
        conf = (f". {{\n cache {{\n  disable denial nocache.example\n }}\n"
                f" forward . {up.hostport}\n}}\n")
        with serve(tmp_path, conf) as s:
            for name, rcode in (("nx-a.example.", dns.rcode.NXDOMAIN),
                                ("nodata-a.example.", dns.rcode.NOERROR)):
                sent1 = time.monotonic()
                r1, _ = ask(s, name)
                got1 = time.monotonic()
                assert r1.rcode() == rcode and not r1.answer
                assert r1.authority[0].ttl == 60                # min(SOA TTL, SOA MINIMUM)
                time.sleep(1.1)
                sent2 = time.monotonic()
                r2, _ = ask(s, name)
                got2 = time.monotonic()
                assert r2.rcode() == rcode
                assert r2.authority[0].ttl in aged_ttl(60, sent2 - got1, got2 - sent1)
                assert r2.authority[0].ttl <= 59                 # decremented
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
            # immediate (the default): an expired entry is answered at once, not after the
            # refresh; the upstream's new answer shows which one the client got
            r, _ = ask(s, "moved.example.")
            assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 1
            up.records[("moved.example.", "A")] = ["192.0.2.2"]
            time.sleep(2.1)                                      # expired (TTL 1)
            r, _ = ask(s, "moved.example.")
            assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 0   # stale, at once
            assert wait_until(lambda: a_addresses(ask(s, "moved.example.")[0]) == ["192.0.2.2"],
                              10)                                # then refreshed behind it

            r, _ = ask(s, "stale.example.")
            assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 1
            up.paused = True                                     # the upstream goes dark
            time.sleep(2.1)
            n = up.count("stale.example.")

            def stale_answer_and_refreshes(k: int) -> bool:
                r, _ = ask(s, "stale.example.")
                assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 0
                return up.count("stale.example.") >= n + k

            # every answer is the stale entry, while refresh after refresh fails (a new
            # one is only sent once the one before has timed out)
            assert wait_until(lambda: stale_answer_and_refreshes(3), 20, step=0.1)
            up.paused = False
            assert wait_until(lambda: ask(s, "stale.example.")[0].answer[0].ttl == 1, 10)


def test_prefetch_refreshes_popular_entries_before_expiry(tmp_path):
    # TTL 10, prefetched once 80 % of it is left (after 2 s): long before it expires
    with StubUpstream(ttl=10) as up:
        conf = (f". {{\n cache {{\n  success 1000 60 1\n  prefetch 2 1m 80%\n }}\n"
                f" forward . {up.hostport}\n}}\n")
        with serve(tmp_path, conf) as s:
            stored = time.monotonic()
            for _ in range(3):                                   # 1 miss + 2 hits
                ask(s, "hot.example.")
            ask(s, "cold.example.")                              # 1 miss, no hits
            assert up.count("hot.example.") == 1
            up.records[("hot.example.", "A")] = ["192.0.2.2"]    # what a refresh brings
            assert wait_until(lambda: up.count("hot.example.") == 2, 15)   # refreshed alone
            assert up.arrived("hot.example.")[1] - stored < 10   # before the entry expired
            # the refreshed answer is served (fresh), and no client query was forwarded
            assert wait_until(lambda: a_addresses(ask(s, "hot.example.")[0]) == ["192.0.2.2"], 10)
            assert up.count("hot.example.") == 2
            time.sleep(1.0)                                      # another prefetch scan
            assert up.count("cold.example.") == 1
