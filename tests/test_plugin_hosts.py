"""``hosts`` served by `fastdns serve`: CoreDNS's own test table (plugin/hosts/hosts_test.go),
its README's examples and k3s's NodeHosts shape, queried over UDP and TCP with dnspython;
reload publishes what changed; an entry under ``cluster.local`` is reached before
``kubernetes`` (CoreDNS's plugin order); fallthrough reaches the next plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
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
from tests.forward_support import wait_until
from tests.server_support import cluster_objects, write_snapshot

# CoreDNS's hostsExample, as it is (its last two lines are not host lines: skipped)
HOSTS_EXAMPLE = """
127.0.0.1 localhost localhost.domain
::1 localhost localhost.domain
10.0.0.1 example.org
::FFFF:10.0.0.2 example.com
10.0.0.3 fallthrough-example.org
1.2.3.4 aa.example.com
5.6.7.8 *.apps.example.com
reload 5s
timeout 3600
"""

# CoreDNS's hostsTestCases: (qname, qtype, answer RRs as "name ttl type rdata")
COREDNS_CASES = [
    ("example.org.", "A", ["example.org. 3600 A 10.0.0.1"]),
    ("example.com.", "A", ["example.com. 3600 A 10.0.0.2"]),
    ("localhost.", "AAAA", ["localhost. 3600 AAAA ::1"]),
    ("1.0.0.10.in-addr.arpa.", "PTR", ["1.0.0.10.in-addr.arpa. 3600 PTR example.org."]),
    ("2.0.0.10.in-addr.arpa.", "PTR", ["2.0.0.10.in-addr.arpa. 3600 PTR example.com."]),
    ("1.0.0.127.in-addr.arpa.", "PTR", ["1.0.0.127.in-addr.arpa. 3600 PTR localhost.",
                                        "1.0.0.127.in-addr.arpa. 3600 PTR localhost.domain."]),
    ("example.org.", "AAAA", []),
    ("example.org.", "MX", []),
    ("fallthrough-example.org.", "AAAA", []),
    ("apps.example.com.", "A", []),          # the wildcard's parent itself has no entry: see below
    ("x.apps.example.com.", "A", ["x.apps.example.com. 3600 A 5.6.7.8"]),
    # a first label of another length than the "*" (the answer's owner follows the question)
    ("console-openshift.apps.example.com.", "A",
     ["console-openshift.apps.example.com. 3600 A 5.6.7.8"]),
    ("Mixed-Case.apps.example.com.", "AAAA", []),
    ("aa.example.com.", "A", ["aa.example.com. 3600 A 1.2.3.4"]),
]


def rrs(msg: dns.message.Message) -> list[str]:
    out = []
    for rrset in msg.answer:
        for rd in rrset:
            out.append(f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}")
    return sorted(out)


def ask(srv: ServeProcess, qname: str, qtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype)
    if tcp:
        return dns.query.tcp(q, srv.host, port=srv.port, timeout=5)
    return dns.query.udp(q, srv.host, port=srv.port, timeout=5)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("hosts")
    (tmp / "hosts").write_text(HOSTS_EXAMPLE)
    (tmp / "Corefile").write_text(". {\n    hosts hosts\n}\n")
    with ServeProcess(tmp / "Corefile", workers=2, probe=("example.org.", "A")) as srv:
        yield srv


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("qname,qtype,want", COREDNS_CASES,
                         ids=[f"{q}{t}" for q, t, _ in COREDNS_CASES])
def test_coredns_table(example: ServeProcess, qname: str, qtype: str, want: list[str],
                       tcp: bool) -> None:
    r = ask(example, qname, qtype, tcp)
    if qname == "apps.example.com.":
        # CoreDNS answers the wildcard's parent SERVFAIL (no entry, no fallthrough),
        # which its table leaves unchecked (a nil message); so do we
        assert r.rcode() == dns.rcode.SERVFAIL
        return
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA
    assert rrs(r) == sorted(want)
    assert not r.authority                  # hosts has no SOA


def test_absent_names(example: ServeProcess) -> None:
    # in the zones, no entry, no fallthrough: SERVFAIL (no SOA for an NXDOMAIN)
    assert ask(example, "nope.example.org.", "A").rcode() == dns.rcode.SERVFAIL
    # a reverse name with an entry, asked for another type: not a host name either
    assert ask(example, "1.0.0.10.in-addr.arpa.", "A").rcode() == dns.rcode.SERVFAIL
    # PTR without an entry goes to the next plugin; there is none: SERVFAIL
    assert ask(example, "9.9.9.9.in-addr.arpa.", "PTR").rcode() == dns.rcode.SERVFAIL
    # PTR of a forward name is not answered by hosts either
    assert ask(example, "example.org.", "PTR").rcode() == dns.rcode.SERVFAIL


def test_dig_agrees(example: ServeProcess) -> None:
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed")
    out = subprocess.run(["dig", "+short", "+tries=1", "+time=5", "-p", str(example.port),
                          "@" + example.host, "example.com", "A"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.split() == ["10.0.0.2"]
    out = subprocess.run(["dig", "+short", "+tries=1", "+time=5", "-p", str(example.port),
                          "@" + example.host, "-x", "127.0.0.1"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert sorted(out.split()) == ["localhost.", "localhost.domain."]


def test_order_fallthrough_reload_k3s_nodehosts(tmp_path: Path) -> None:
    """k3s's default: ``hosts /etc/coredns/NodeHosts { ttl 60; reload 15s; fallthrough }``
    in the cluster block, before ``kubernetes``, then ``forward``."""
    write_snapshot(tmp_path / "cluster.yaml", cluster_objects())
    node_hosts = tmp_path / "NodeHosts"
    node_hosts.write_text("172.18.0.2 k3s-server\n10.0.0.9 shadow.prod.svc.cluster.local\n")
    with StubUpstream() as up:
        (tmp_path / "Corefile").write_text(f""". {{
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        snapshot cluster.yaml
        fallthrough in-addr.arpa ip6.arpa
    }}
    hosts NodeHosts {{
        ttl 60
        reload 200ms
        fallthrough
    }}
    forward . {up.address[0]}:{up.address[1]}
}}
""")
        with ServeProcess(tmp_path / "Corefile", workers=2, probe=("k3s-server.", "A")) as srv:
            for tcp in (False, True):
                r = ask(srv, "k3s-server.", "A", tcp)
                assert rrs(r) == ["k3s-server. 60 A 172.18.0.2"] and r.flags & dns.flags.AA
                # hosts runs before kubernetes (CoreDNS's order, whatever the Corefile's)
                r = ask(srv, "shadow.prod.svc.cluster.local.", "A", tcp)
                assert rrs(r) == ["shadow.prod.svc.cluster.local. 60 A 10.0.0.9"]
                # a cluster name hosts does not have falls through to kubernetes
                r = ask(srv, "api.prod.svc.cluster.local.", "A", tcp)
                assert r.rcode() == dns.rcode.NOERROR and rrs(r)[0].endswith("A 10.96.1.10")
                # a name neither has: forward (the stub answers 192.0.2.1)
                r = ask(srv, "www.example.", "A", tcp)
                assert rrs(r) == ["www.example. 300 A 192.0.2.1"] or \
                    [x.split()[-1] for x in rrs(r)] == ["192.0.2.1"]
            assert up.count("k3s-server.") == 0 and up.count("www.example.") >= 1
            # a reload: the new entry answers, the removed one falls through to forward
            time.sleep(0.05)
            node_hosts.write_text("172.18.0.3 k3s-agent\n")
            os.utime(node_hosts, (time.time() + 5, time.time() + 5))   # a new mtime for sure
            assert wait_until(lambda: rrs(ask(srv, "k3s-agent.", "A")) ==
                              ["k3s-agent. 60 A 172.18.0.3"], timeout=10)
            for _ in range(4):                   # every worker has the change
                assert rrs(ask(srv, "k3s-agent.", "A")) == ["k3s-agent. 60 A 172.18.0.3"]
                r = ask(srv, "k3s-server.", "A")
                assert [x.split()[-1] for x in rrs(r)] == ["192.0.2.1"]
            # the file vanishes: the entries go (inline ones would stay), nothing breaks
            node_hosts.unlink()
            assert wait_until(lambda: [x.split()[-1] for x in rrs(ask(srv, "k3s-agent.", "A"))]
                              == ["192.0.2.1"], timeout=10)


def test_readme_inline_and_no_reverse(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text("""example.hosts {
    hosts {
        10.0.0.1 example.hosts
        2001:db8::1 example.hosts v6.example.hosts
        10.0.0.5 other.zone
        no_reverse
        ttl 120
        fallthrough_unsupported
        fallthrough other.example.hosts
    }
}
1.0.0.10.in-addr.arpa {
    hosts {
        10.0.0.1 example.hosts
    }
}
""")
    with ServeProcess(tmp_path / "Corefile", workers=1, probe=("example.hosts.", "A")) as srv:
        r = ask(srv, "example.hosts.", "A")
        assert rrs(r) == ["example.hosts. 120 A 10.0.0.1"]
        assert rrs(ask(srv, "example.hosts.", "AAAA", True)) == \
            ["example.hosts. 120 AAAA 2001:db8::1"]
        assert rrs(ask(srv, "v6.example.hosts.", "A")) == []          # NODATA
        # fallthrough_unsupported: only names under the fallthrough zones fall through
        r = ask(srv, "example.hosts.", "TXT")
        assert r.rcode() == dns.rcode.NOERROR and rrs(r) == []
        # names outside the plugin's zones (other.zone) are dropped; the block's zone
        # answers only what it has
        assert ask(srv, "other.zone.", "A").rcode() == dns.rcode.REFUSED
        # the reverse block has hosts without no_reverse, names outside its zone kept
        # out: the PTR of 10.0.0.1 is not built (example.hosts is not in 1.0.0.10...)
        assert ask(srv, "1.0.0.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.SERVFAIL


def test_reload_stops_every_source_of_equal_lines(tmp_path: Path) -> None:
    """The same hosts line in two blocks gives two tables with equal keys: a reload
    without them must stop both sources (one used to be forgotten, its thread running)."""
    from fastdns.config import parse
    from fastdns.coordinator.answers import build_tables, stop_tables
    from fastdns.plugins.runtime import engine_config

    (tmp_path / "hosts").write_text("10.0.0.1 a.example.\n")
    one = parse(f"a.example {{\n hosts {tmp_path}/hosts a.example\n}}\n"
                f"b.example:1054 {{\n hosts {tmp_path}/hosts a.example\n}}\n",
                filename="Corefile", env={})
    tables, gone = build_tables(one, engine_config(one), [], lambda t, d: None,
                                ns_addresses=(), poll_interval=0.05)
    try:
        assert len(tables) == 2 and gone == []
        # the same plan again: both kept, none to stop
        again, gone = build_tables(one, engine_config(one), tables, lambda t, d: None,
                                   ns_addresses=(), poll_interval=0.05)
        assert sorted(map(id, again)) == sorted(map(id, tables)) and gone == []
        other = parse(". {\n whoami\n}\n", filename="Corefile", env={})
        none, gone = build_tables(other, engine_config(other), again, lambda t, d: None,
                                  ns_addresses=(), poll_interval=0.05)
        assert none == [] and sorted(map(id, gone)) == sorted(map(id, tables))
    finally:
        stop_tables(tables)
