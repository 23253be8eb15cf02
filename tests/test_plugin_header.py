"""``chaos``, ``any``, ``minimal`` and ``bufsize`` served by `fastdns serve`: CoreDNS's own
test tables (plugin/chaos/chaos_test.go, plugin/any/any_test.go,
plugin/minimal/minimal_test.go) queried with dnspython over UDP and TCP, and OpenShift's
default Corefile (``bufsize 1232`` + ``hostname.bind { chaos }``) as it ships."""

from __future__ import annotations

import random
import sys
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from tests.server_support import cluster_objects, write_snapshot


def ask(srv: ServeProcess, qname: str, qtype: str, tcp: bool = False, qclass: str = "IN",
        payload: int | None = 1232) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, qclass, use_edns=payload is not None,
                               payload=payload or 512)
    if tcp:
        return dns.query.tcp(q, srv.host, port=srv.port, timeout=5)
    return dns.query.udp(q, srv.host, port=srv.port, timeout=5, ignore_trailing=True)


def txt(msg: dns.message.Message) -> list[str]:
    return [s.decode() for rrset in msg.answer for rd in rrset for s in rd.strings]


# -- chaos -------------------------------------------------------------------

@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, StubUpstream]]:
    tmp = tmp_path_factory.mktemp("chaos")
    with StubUpstream() as up:
        (tmp / "Corefile").write_text(f""". {{
    chaos CoreDNS-001 "Miek Gieben" "Second Author"
    any
    forward . {up.hostport}
}}
""")
        with ServeProcess(tmp / "Corefile", workers=2, probe=("x.example.", "A")) as srv:
            yield srv, up


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_chaos_coredns_table(chaos: tuple[ServeProcess, StubUpstream], tcp: bool) -> None:
    srv, up = chaos
    r = ask(srv, "version.bind.", "TXT", tcp, "CH")
    assert r.rcode() == dns.rcode.NOERROR and txt(r) == ["CoreDNS-001"]
    assert r.answer[0].rdclass == dns.rdataclass.CH and r.answer[0].ttl == 0
    assert not r.flags & dns.flags.AA                       # CoreDNS does not set AA
    r = ask(srv, "authors.bind.", "TXT", tcp, "CH")
    assert sorted(txt(r)) == ["Miek Gieben", "Second Author"]
    assert txt(ask(srv, "VERSION.server.", "TXT", tcp, "CH")) == ["CoreDNS-001"]
    host = socket.gethostname()
    assert txt(ask(srv, "hostname.bind.", "TXT", tcp, "CH")) == [host]
    assert txt(ask(srv, "id.server.", "TXT", tcp, "CH")) == [host]
    # authors.bind SRV is not chaos's: the next plugin (forward) has it
    before = up.count("authors.bind.")
    r = ask(srv, "authors.bind.", "SRV", tcp, "CH")
    assert up.count("authors.bind.") == before + 1 and not r.answer


def test_chaos_leaves_other_names_and_classes(chaos: tuple[ServeProcess, StubUpstream]) -> None:
    srv, up = chaos
    r = ask(srv, "version.bind.", "TXT")                    # class IN: not chaos's
    assert up.count("version.bind.") >= 1 and not txt(r)
    before = up.count("other.bind.")
    ask(srv, "other.bind.", "TXT", qclass="CH")
    assert up.count("other.bind.") == before + 1


# -- any ---------------------------------------------------------------------

@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_any_coredns_table(chaos: tuple[ServeProcess, StubUpstream], tcp: bool) -> None:
    srv, up = chaos
    r = ask(srv, "example.org.", "ANY", tcp)
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1
    hinfo = r.answer[0]
    assert hinfo.rdtype == dns.rdatatype.HINFO and hinfo.ttl == 8482
    assert hinfo[0].cpu == b"ANY obsoleted" and hinfo[0].os == b"See RFC 8482"
    assert up.count("example.org.") == 0 or all(t != 255 for n, t, _ in up.log
                                                  if n == "example.org.")
    # TestAnyNonANYQuery: every other type reaches the next plugin
    for qtype in ("A", "AAAA", "MX", "TXT", "CNAME"):
        before = sum(1 for n, t, _ in up.log if n == "example.org." and
                     t == dns.rdatatype.from_text(qtype))
        ask(srv, "example.org.", qtype, tcp)
        assert sum(1 for n, t, _ in up.log if n == "example.org." and
                   t == dns.rdatatype.from_text(qtype)) == before + 1, qtype


# -- minimal -----------------------------------------------------------------

_ANSWER = ["example.com. 293 IN A 142.250.76.46"]
_NS = [f"example.com. 157127 IN NS ns{i}.example.com." for i in (2, 1, 3, 4)]
_EXTRA = ["ns2.example.com. 316273 IN A 216.239.34.10",
          "ns2.example.com. 157127 IN AAAA 2001:4860:4802:34::a",
          "ns1.example.com. 165555 IN A 216.239.32.10"]


def _minimal_case(q: dns.message.Message) -> dns.message.Message | None:
    """CoreDNS's minimal_test cases, chosen by the first label (the upstream's side)."""
    first = q.question[0].name.labels[0].decode()
    if first not in ("noerror", "delegation", "servfail"):
        return None
    r = dns.message.make_response(q)
    name = q.question[0].name
    if first != "delegation":
        r.answer.append(dns.rrset.from_text_list(name, 293, "IN", "A", ["142.250.76.46"]))
    if first != "noerror":
        r.authority.append(dns.rrset.from_text_list("example.com.", 157127, "IN", "NS",
                                                    [x.split()[-1] for x in _NS]))
    for rr in _EXTRA:
        n, ttl, _, t, data = rr.split()
        r.additional.append(dns.rrset.from_text(n, int(ttl), "IN", t, data))
    if first == "servfail":
        r.set_rcode(dns.rcode.SERVFAIL)
    return r


@pytest.fixture(scope="module")
def minimal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("minimal")
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    with StubUpstream(handler=_minimal_case) as up:
        (tmp / "Corefile").write_text(f""". {{
    minimal
    kubernetes cluster.local {{
        snapshot cluster.yaml
    }}
    forward . {up.hostport}
}}
full.test {{
    kubernetes cluster.local {{
        snapshot cluster.yaml
    }}
}}
""")
        with ServeProcess(tmp / "Corefile", workers=1) as srv:
            yield srv


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_minimal_coredns_table(minimal: ServeProcess, tcp: bool) -> None:
    # answers written in Python (forward): NOERROR with answers loses Ns and Extra
    r = ask(minimal, "noerror.example.com.", "A", tcp)
    assert [rr.to_text() for rr in r.answer] == ["noerror.example.com. 293 IN A 142.250.76.46"]
    assert not r.authority and not r.additional and r.edns == 0       # the OPT stays
    # a delegation and an error are passed on as they are
    r = ask(minimal, "delegation.example.com.", "A", tcp)
    assert not r.answer and len(r.authority[0]) == 4 and len(r.additional) == 3
    r = ask(minimal, "servfail.example.com.", "A", tcp)
    assert r.rcode() == dns.rcode.SERVFAIL and len(r.answer) == 1
    assert len(r.authority[0]) == 4 and len(r.additional) == 3


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_minimal_on_table_answers(minimal: ServeProcess, tcp: bool) -> None:
    # answers from the compiled table (C): an SRV's additional addresses go
    r = ask(minimal, "_pg._tcp.db.prod.svc.cluster.local.", "SRV", tcp)
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer[0]) == 3
    assert not r.additional and not r.authority
    # negative answers keep their SOA
    r = ask(minimal, "nope.prod.svc.cluster.local.", "A", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    r = ask(minimal, "api.prod.svc.cluster.local.", "TXT", tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.authority[0].rdtype == dns.rdatatype.SOA


# -- bufsize + OpenShift -----------------------------------------------------

def _openshift_corefile(tmp: Path, port: int, up: StubUpstream) -> Path:
    """OpenShift's default (cluster-dns-operator), with loopback ports for the probes, a
    snapshot for the API and a resolv.conf of our own (naming a port-53 stub)."""
    (tmp / "resolv.conf").write_text(f"nameserver {up.host}\noptions ndots:5\n")
    many = tmp / "hosts"
    many.write_text("".join(f"10.9.{i // 250}.{i % 250 + 1} many.hosts.test\n" for i in range(40)))
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    conf = tmp / "Corefile"
    conf.write_text(f""".:{port} {{
    bufsize 512
    errors
    log . {{
        class error
    }}
    health 127.0.0.1:{free_port()} {{
        lameduck 1s
    }}
    ready 127.0.0.1:{free_port()}
    hosts {many} hosts.test
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        snapshot cluster.yaml
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    prometheus 127.0.0.1:{free_port()}
    forward . {tmp / "resolv.conf"} {{
        policy sequential
    }}
    cache 900 {{
        denial 9984 30
    }}
    reload
}}
hostname.bind:{port} {{
    chaos
}}
""")
    return conf


def test_openshift_corefile_and_bufsize(tmp_path: Path) -> None:
    host = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    many = [f"10.8.0.{i}" for i in range(1, 41)]
    try:
        up = StubUpstream(host=host, port=53, records={("big.example.", "A"): many})
    except PermissionError:
        pytest.skip("binding port 53 needs CAP_NET_BIND_SERVICE")
    port = free_port()
    with up, ServeProcess(_openshift_corefile(tmp_path, port, up), workers=2, port=port,
                          probe=("api.prod.svc.cluster.local.", "A")) as srv:
        # the cluster and the upstream answer
        r = ask(srv, "api.prod.svc.cluster.local.", "A")
        assert [rd.address for rd in r.answer[0]] == ["10.96.1.10"]
        r = ask(srv, "www.example.", "A")
        assert [rd.address for rd in r.answer[0]] == ["192.0.2.1"]
        # hostname.bind is its own block, class CH
        r = ask(srv, "hostname.bind.", "TXT", qclass="CH")
        assert txt(r) == [socket.gethostname()]
        # bufsize 512: a 1232-byte client gets a table answer of 40 A (~700 bytes) truncated
        # (what fits, TC set: CoreDNS's truncation too)
        r = ask(srv, "many.hosts.test.", "A", payload=1232)
        assert r.flags & dns.flags.TC and sum(len(x) for x in r.answer) < 40
        assert len(ask(srv, "many.hosts.test.", "A", tcp=True).answer[0]) == 40
        # ... and a forwarded one too (fresh from the upstream, then from the cache)
        for _ in range(2):
            r = ask(srv, "big.example.", "A", payload=1232)
            assert r.flags & dns.flags.TC and sum(len(x) for x in r.answer) < 40
        assert len(ask(srv, "big.example.", "A", tcp=True).answer[0]) == 40
        # clients without EDNS or asking for less are not affected
        r = ask(srv, "api.prod.svc.cluster.local.", "A", payload=None)
        assert r.edns < 0 and len(r.answer) == 1
        # a size below bufsize is kept: 40 A records do not fit 512 either way
        r = ask(srv, "many.hosts.test.", "A", payload=512)
        assert r.flags & dns.flags.TC


def test_bufsize_default_is_harmless(tmp_path: Path) -> None:
    # bufsize 1232 (OpenShift's line): fastdns never sends more than 1232 over UDP anyway
    (tmp_path / "hosts").write_text("".join(f"10.9.0.{i} many.hosts.test\n" for i in range(1, 41)))
    (tmp_path / "Corefile").write_text(f"hosts.test {{\n bufsize 1232\n hosts {tmp_path}/hosts\n}}\n")
    with ServeProcess(tmp_path / "Corefile", workers=1, probe=("many.hosts.test.", "A")) as srv:
        r = ask(srv, "many.hosts.test.", "A", payload=4096)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40


# -- nsid --------------------------------------------------------------------

def _nsid_of(msg: dns.message.Message) -> list[bytes]:
    return [o.nsid for o in msg.options if o.otype == dns.edns.NSID]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_nsid_coredns_table_and_every_answer_path(tmp_path: Path, tcp: bool) -> None:
    """CoreDNS's nsid_test (whoami behind nsid, and behind cache), then the other
    ways an answer is written: a compiled table (C), forward (Python), the cache (C)."""
    write_snapshot(tmp_path / "cluster.yaml", cluster_objects())
    with StubUpstream() as up:
        (tmp_path / "Corefile").write_text(f""". {{
    nsid NSID
    cache 30
    kubernetes cluster.local {{
        snapshot cluster.yaml
        fallthrough
    }}
    forward . {up.hostport} {{
        except who.test
    }}
    whoami
}}
""")
        with ServeProcess(tmp_path / "Corefile", workers=1) as srv:
            def asks(qname: str, qtype: str, want_nsid: bool = True) -> dns.message.Message:
                q = dns.message.make_query(qname, qtype, use_edns=0, payload=4096,
                                           options=[dns.edns.NSIDOption(b"")] if want_nsid else [])
                if tcp:
                    return dns.query.tcp(q, srv.host, port=srv.port, timeout=5)
                return dns.query.udp(q, srv.host, port=srv.port, timeout=5)
            r = asks("who.test.", "A")                              # whoami, as CoreDNS's test
            assert r.rcode() == dns.rcode.NOERROR and r.additional
            assert _nsid_of(r) == [b"NSID"]
            assert _nsid_of(asks("api.prod.svc.cluster.local.", "A")) == [b"NSID"]
            assert _nsid_of(asks("nope.prod.svc.cluster.local.", "A")) == [b"NSID"]
            for _ in range(2):                                      # forward, then the cache
                r = asks("www.example.", "A")
                assert [rd.address for rd in r.answer[0]] == ["192.0.2.1"]
                assert _nsid_of(r) == [b"NSID"]
            assert up.count("www.example.") == 1
            # no NSID asked: none sent, by any path (the cache holds none either)
            for name in ("who.test.", "api.prod.svc.cluster.local.", "www.example."):
                r = asks(name, "A", want_nsid=False)
                assert r.edns == 0 and _nsid_of(r) == []


def test_nsid_dig_and_limit(tmp_path: Path) -> None:
    import shutil
    import subprocess
    (tmp_path / "Corefile").write_text(". {\n nsid fastdns-test-1\n whoami\n}\n")
    with ServeProcess(tmp_path / "Corefile", workers=1, probe=("x.", "A")) as srv:
        if shutil.which("dig") is not None:
            out = subprocess.run(["dig", "+nsid", "+tries=1", "+time=5", "-p", str(srv.port),
                                  "@" + srv.host, "x.", "A"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
            assert 'NSID: 66 61 73 74 64 6e 73 2d 74 65 73 74 2d 31 ("fastdns-test-1")' in out
    # an identifier that would not leave room for answers is a configuration error
    (tmp_path / "Corefile").write_text(". {\n nsid " + "x" * 513 + "\n whoami\n}\n")
    r = subprocess.run([sys.executable, "-m", "fastdns", "check-config",
                        str(tmp_path / "Corefile")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "at most 512" in r.stderr and "Traceback" not in r.stderr
