"""``local`` served: CoreDNS's own table (plugin/local/local_test.go) and its
localhost_prefix tests, over UDP and TCP against `fastdns serve`, with a real
upstream as the next plugin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream

# (question, qtype, rcode, answer (owner, type) or None, authority (owner, type) or None)
COREDNS_CASES = [
    ("localhost.", "A", "NOERROR", ("localhost.", "A"), None),
    ("localHOst.", "A", "NOERROR", ("localHOst.", "A"), None),
    ("localhost.", "AAAA", "NOERROR", ("localhost.", "AAAA"), None),
    ("localhost.", "NS", "NOERROR", ("localhost.", "NS"), None),
    ("localhost.", "SOA", "NOERROR", ("localhost.", "SOA"), None),
    ("127.in-addr.arpa.", "A", "NOERROR", None, ("127.in-addr.arpa.", "SOA")),
    ("localhost.", "MX", "NOERROR", None, ("localhost.", "SOA")),
    ("a.localhost.", "A", "NOERROR", ("a.localhost.", "A"), None),
    ("a.localhost.", "AAAA", "NOERROR", ("a.localhost.", "AAAA"), None),
    ("a.localhost.", "MX", "NOERROR", None, ("a.localhost.", "SOA")),
    ("1.0.0.127.in-addr.arpa.", "PTR", "NOERROR", ("1.0.0.127.in-addr.arpa.", "PTR"), None),
    ("1.0.0.127.in-addr.arpa.", "MX", "NOERROR", None, ("127.in-addr.arpa.", "SOA")),
    ("2.0.0.127.in-addr.arpa.", "PTR", "NXDOMAIN", None, ("127.in-addr.arpa.", "SOA")),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, ServeProcess, StubUpstream]]:
    tmp = tmp_path_factory.mktemp("local")
    with StubUpstream() as up:
        (tmp / "on").write_text(f". {{\n local\n forward . {up.hostport}\n}}\n")
        (tmp / "off").write_text(f". {{\n local {{\n  localhost_prefix off\n }}\n"
                                 f" forward . {up.hostport}\n}}\n")
        with ServeProcess(tmp / "on", workers=1, probe=("localhost.", "A")) as on, \
                ServeProcess(tmp / "off", workers=1, probe=("localhost.", "A")) as off:
            yield on, off, up


def ask(srv: ServeProcess, qname: str, qtype: str, tcp: bool) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype)
    if tcp:
        return dns.query.tcp(q, srv.host, port=srv.port, timeout=5)
    return dns.query.udp(q, srv.host, port=srv.port, timeout=5)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("case", COREDNS_CASES, ids=[f"{c[0]}{c[1]}" for c in COREDNS_CASES])
def test_coredns_table(served: tuple[ServeProcess, ServeProcess, StubUpstream], case: tuple,
                       tcp: bool) -> None:
    qname, qtype, rcode, answer, authority = case
    on, _, up = served
    before = up.count(qname.lower())
    r = ask(on, qname, qtype, tcp)
    assert dns.rcode.to_text(r.rcode()) == rcode
    assert not r.flags & dns.flags.AA
    if answer is None:
        assert not r.answer
    else:
        assert (str(r.answer[0].name), dns.rdatatype.to_text(r.answer[0].rdtype)) == answer
        assert r.answer[0].ttl == 604800
    if authority is None:
        assert not r.authority
    else:
        soa = r.authority[0]
        assert (str(soa.name), dns.rdatatype.to_text(soa.rdtype)) == authority
        assert str(soa[0]) == "localhost. root.localhost. 1 0 0 0 604800"
    assert up.count(qname.lower()) == before             # never forwarded


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_rdata(served: tuple[ServeProcess, ServeProcess, StubUpstream], tcp: bool) -> None:
    on, _, _ = served
    assert ask(on, "localhost.", "A", tcp).answer[0][0].address == "127.0.0.1"
    assert ask(on, "x.y.localhost.", "AAAA", tcp).answer[0][0].address == "::1"
    assert str(ask(on, "localhost.", "NS", tcp).answer[0][0]) == "localhost."
    assert str(ask(on, "1.0.0.127.in-addr.arpa.", "PTR", tcp).answer[0][0]) == "localhost."
    r = ask(on, "255.in-addr.arpa.", "SOA", tcp)
    assert str(r.answer[0].name) == "255.in-addr.arpa."
    r = ask(on, "1.0.in-addr.arpa.", "PTR", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and str(r.authority[0].name) == "0.in-addr.arpa."


def test_localhost_prefix(served: tuple[ServeProcess, ServeProcess, StubUpstream]) -> None:
    on, off, up = served
    # TestLocalInterceptsLocalhostPrefixByDefault
    r = ask(on, "localhost.example.net.", "A", False)
    assert [(str(rr.name), rr[0].address) for rr in r.answer] == \
        [("localhost.example.net.", "127.0.0.1")]
    assert up.count("localhost.example.net.") == 0
    # TestLocalDoesNotInterceptLocalhostPrefixWhenDisabled: the next plugin answers
    r = ask(off, "localhost.example.net.", "A", False)
    assert [rr[0].address for rr in r.answer] == ["192.0.2.1"]
    assert up.count("localhost.example.net.") == 1
    # names under localhost. are local either way; other names go on
    assert ask(off, "a.localhost.", "A", False).answer[0][0].address == "127.0.0.1"
    assert ask(on, "www.example.", "A", True).answer[0][0].address == "192.0.2.1"
    assert ask(on, "notlocalhost.example.", "A", False).answer[0][0].address == "192.0.2.1"
