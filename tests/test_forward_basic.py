"""forward: answers, stub domains, except, resolv.conf, TC → TCP, force_tcp, DoT, coalescing.

Every server is ``fastdns serve`` in a subprocess; upstreams are
:class:`fastdns._testing.upstream.StubUpstream` on loopback; dnspython is the
client and the oracle (the stub's own answer, asked directly).
"""

from __future__ import annotations

import random
import socket
import threading

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from fastdns._testing.upstream import StubUpstream, make_self_signed
from tests.forward_support import PROBE_BLOCK, a_addresses, ask, serve


def direct(up: StubUpstream, qname: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(qname, qtype), up.host, port=up.port, timeout=2)


def test_forward_answers_as_upstream_with_client_id_and_case(tmp_path):
    with StubUpstream(records={("txt.example.", "TXT"): ['"hello world"']}) as up, \
            serve(tmp_path, f". {{\n forward . {up.hostport}\n}}\n") as s:
        for qname, qtype in (("WwW.ExAmPlE.oRg.", "A"), ("v6.example.", "AAAA"),
                             ("txt.example.", "TXT"), ("nx1.example.", "A"),
                             ("nodata.example.", "MX")):
            q = dns.message.make_query(qname, qtype, use_edns=0)
            r = dns.query.udp(q, s.host, port=s.port, timeout=3)
            oracle = direct(up, qname, qtype)
            assert r.id == q.id
            assert r.question[0].name.to_text() == qname          # 0x20 case kept
            assert r.rcode() == oracle.rcode()
            assert r.answer == oracle.answer
            assert [x.to_text() for x in r.authority] == [x.to_text() for x in oracle.authority]
            assert r.flags & dns.flags.RA
        assert up.count("www.example.org.") == 2       # the server's query + the oracle's


def test_stub_domains_longest_zone_wins_and_except(tmp_path):
    with StubUpstream() as main, StubUpstream() as corp, StubUpstream() as deep:
        conf = (f". {{\n forward . {main.hostport} {{\n  except skip.example\n }}\n}}\n"
                f"corp.example {{\n forward . {corp.hostport}\n}}\n"
                f"deep.corp.example {{\n forward . {deep.hostport}\n}}\n")
        with serve(tmp_path, conf) as s:
            assert ask(s, "www.example.com.")[0].rcode() == dns.rcode.NOERROR
            assert ask(s, "a.corp.example.")[0].rcode() == dns.rcode.NOERROR
            assert ask(s, "x.deep.corp.example.")[0].rcode() == dns.rcode.NOERROR
            r, _ = ask(s, "host.skip.example.")
            assert r.rcode() == dns.rcode.SERVFAIL       # CoreDNS: "no next plugin found"
            assert main.count("www.example.com.") == 1 and main.count("a.corp.example.") == 0
            assert corp.count("a.corp.example.") == 1 and corp.count("x.deep.corp.example.") == 0
            assert deep.count("x.deep.corp.example.") == 1
            assert main.count("host.skip.example.") == 0


def test_resolv_conf_destination(tmp_path):
    # a resolv.conf of our own naming a loopback address (port 53 is what resolv.conf means)
    host = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    try:
        up = StubUpstream(host=host, port=53)
    except PermissionError:
        pytest.skip("binding port 53 needs CAP_NET_BIND_SERVICE")
    with up:
        (tmp_path / "resolv.conf").write_text(f"search example\nnameserver {host}\noptions ndots:5\n")
        with serve(tmp_path, f". {{\n forward . {tmp_path}/resolv.conf\n}}\n") as s:
            r, _ = ask(s, "via-resolv.example.")
            assert a_addresses(r) == ["192.0.2.1"]
            assert up.count("via-resolv.example.") == 1


def test_truncated_udp_answer_is_retried_over_tcp(tmp_path):
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(60)]
    with StubUpstream("tc", records={("big.example.", "A"): many}) as up, \
            serve(tmp_path, f". {{\n forward . {up.hostport}\n}}\n") as s:
        r, _ = ask(s, "big.example.", use_edns=0, payload=4096)   # UDP client
        assert up.count("big.example.", "udp") == 1 and up.count("big.example.", "tcp") == 1
        assert len(a_addresses(r)) == 60 and not r.flags & dns.flags.TC
        r, _ = ask(s, "big.example.")                  # 512 bytes: truncated by us, TC set
        assert r.flags & dns.flags.TC
        r, _ = ask(s, "big.example.", tcp=True)        # a TCP client is forwarded over TCP
        assert len(a_addresses(r)) == 60
        assert up.count("big.example.", "udp") == 2 and up.count("big.example.", "tcp") == 3


def test_force_tcp_reuses_connections(tmp_path):
    with StubUpstream() as up, \
            serve(tmp_path, f". {{\n forward . {up.hostport} {{\n  force_tcp\n  health_check 0\n }}\n}}\n") as s:
        for i in range(10):
            assert a_addresses(ask(s, f"t{i}.example.")[0]) == ["192.0.2.1"]
        assert up.count(transport="udp") == 0
        assert sum(up.count(f"t{i}.example.", "tcp") for i in range(10)) == 10
        assert up.accepts <= 2                    # sequential queries share a connection


def test_dns_over_tls_with_servername_verification(tmp_path):
    cert, key = make_self_signed(tmp_path, "dns.test")
    with StubUpstream(tls=(cert, key)) as up:
        good = (f". {{\n forward . tls://{up.hostport} {{\n  tls {cert}\n"
                f"  tls_servername dns.test\n }}\n}}\n")
        with serve(tmp_path, good) as s:
            r, _ = ask(s, "secure.example.")
            assert a_addresses(r) == ["192.0.2.1"]
            assert up.count("secure.example.", "tcp") == 1 and up.count(transport="udp") == 0
        bad = PROBE_BLOCK + good.replace("tls_servername dns.test", "tls_servername other.test")
        with serve(tmp_path, bad, name="Corefile.bad") as s:
            r, _ = ask(s, "insecure.example.")
            assert r.rcode() == dns.rcode.SERVFAIL          # certificate name mismatch
            assert up.count("insecure.example.") == 0


def test_dns_over_tls_is_pipelined_in_the_worker_loop(tmp_path):
    """40 names at once to a DoT upstream: all answered over at most 4 connections
    (pipelined, driven by the worker loop), and the worker runs no thread for it."""
    import os

    from tests.attacks_support import ask_all
    cert, key = make_self_signed(tmp_path, "dns.test")
    with StubUpstream(tls=(cert, key)) as up, \
            serve(tmp_path, f". {{\n forward . tls://{up.hostport} {{\n  tls {cert}\n"
                            f"  tls_servername dns.test\n }}\n}}\n") as s:
        (pid,) = s.worker_pids()
        threads = len(os.listdir(f"/proc/{pid}/task"))
        got = ask_all(s.host, s.port, [f"p{i}.example." for i in range(40)], timeout=20)
        assert len(got) == 40 and all(a_addresses(r) == ["192.0.2.1"] for r in got.values())
        assert 1 <= up.accepts <= 4, up.accepts
        assert len(os.listdir(f"/proc/{pid}/task")) == threads


def test_identical_queries_in_flight_go_upstream_once(tmp_path):
    with StubUpstream("slow", delay=0.6) as up, \
            serve(tmp_path, f". {{\n forward . {up.hostport} {{\n  health_check 0\n }}\n}}\n") as s:
        results: list[tuple[int, dns.message.Message]] = []
        names = ["same.example.", "SAME.example.", "Same.Example."] * 4

        def one(qname: str) -> None:
            q = dns.message.make_query(qname, "A")
            results.append((q.id, dns.query.udp(q, s.host, port=s.port, timeout=5)))
        threads = [threading.Thread(target=one, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == len(names)
        for qid, r in results:
            assert r.id == qid and a_addresses(r) == ["192.0.2.1"]
        assert sorted(r.question[0].name.to_text() for _, r in results) == sorted(names)
        assert up.count("same.example.") == 1


def test_answer_from_another_address_is_ignored(tmp_path):
    """A spoofed answer (right port, wrong source) never reaches the client."""
    with StubUpstream("dead") as up, \
            serve(tmp_path, PROBE_BLOCK + f". {{\n forward . {up.hostport} {{\n  read_timeout 1s\n }}\n}}\n") as s:
        got: list[dns.message.Message] = []
        t = threading.Thread(target=lambda: got.append(ask(s, "spoof.example.")[0]))
        t.start()
        assert _wait_source(up, "spoof.example.")
        _, (host, port) = next(x for x in up.sources if x[0] == "spoof.example.")
        q = dns.message.make_query("spoof.example.", "A")
        fake = dns.message.make_response(q)
        fake.answer.append(dns.rrset.from_text("spoof.example.", 300, "IN", "A", "6.6.6.6"))
        wire = fake.to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as liar:
            liar.bind(("127.0.0.2", 0))
            for qid in range(0, 65536, 1):             # every ID: only the source is wrong
                liar.sendto(qid.to_bytes(2, "big") + wire[2:], (host, port))
        t.join()
        assert got and got[0].rcode() == dns.rcode.SERVFAIL


def _wait_source(up: StubUpstream, name: str) -> bool:
    from tests.forward_support import wait_until
    return wait_until(lambda: any(n == name for n, _ in up.sources), 10)


import dns.rrset


def test_answer_with_more_records_than_a_body_holds_is_relayed(tmp_path):
    """600 A records (past the 511 a stored body holds): relayed as the upstream sent
    them, over TCP in full, over UDP truncated with TC, as CoreDNS and Unbound do
    (it used to be SERVFAIL)."""
    many = [f"10.{i // 250}.{i % 250}.1" for i in range(600)]
    with StubUpstream(records={("huge.example.", "A"): many}) as up:
        with serve(tmp_path, f". {{\n forward . {up.hostport}\n cache 30\n}}\n") as s:
            for _ in range(2):                      # not cached; the same again
                r, _ = ask(s, "HUGE.example.", "A", tcp=True)
                assert r.rcode() == dns.rcode.NOERROR and len(a_addresses(r)) == 600
                assert str(r.question[0].name) == "HUGE.example."     # the client's spelling
            q = dns.message.make_query("huge.example.", "A")
            r = dns.query.udp(q, s.host, port=s.port, timeout=5, ignore_trailing=True)
            assert r.id == q.id and r.flags & dns.flags.TC and r.rcode() == dns.rcode.NOERROR
            assert r.flags & dns.flags.RA and not r.answer
            # a normal name next to it is not affected
            assert a_addresses(ask(s, "www.example.", "A")[0]) == ["192.0.2.1"]
