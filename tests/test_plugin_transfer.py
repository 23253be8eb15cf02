"""``transfer`` served by `fastdns serve`: AXFR/IXFR of file, kubernetes and hosts zones
with dnspython (``dns.query.xfr``, ``dns.query.inbound_xfr``) and ``dig`` as clients;
the ``to`` ACL by source address (127.0.0.2 listed, 127.0.0.3 not), UDP refused, a zone
split over several messages, and ordinary queries still answered from the C tables.

The kubernetes expectations are CoreDNS's ``plugin/kubernetes/xfr_test.go``
``expectedZone`` for its test cluster (``handler_test.go`` ``svcIndex``/``epsIndex``,
transcribed as snapshot objects below), with fastdns's name server address."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
import pytest

from fastdns._testing.server import ServeProcess, free_port
from tests.forward_support import wait_until
from tests.k8s_support import endpoint, namespace, service, slice_
from tests.server_support import write_snapshot

NOERROR, SERVFAIL, REFUSED = 0, 2, 5
ALLOWED, DENIED = "127.0.0.2", "127.0.0.3"

DB_EXAMPLE_ORG = """$TTL 3600
$ORIGIN example.org.
@       IN SOA  ns1.example.org. hostmaster.example.org. 2024010101 7200 1800 1209600 300
@       IN NS   ns1.example.org.
@       IN NS   ns2.example.net.
@       IN MX   10 mail.example.org.
@       IN A    192.0.2.1
@       IN TXT  "v=spf1 -all"
ns1     IN A    192.0.2.53
ns1     IN AAAA 2001:db8::53
mail    IN A    192.0.2.25
www     IN CNAME @
ftp  60 IN CNAME www.example.net.
_sip._tcp IN SRV 0 5 5060 sip.example.org.
sip     IN A    192.0.2.60
*.wild  IN A    192.0.2.99
a.b.c   IN A    192.0.2.7
sub     IN NS   ns.sub.example.org.
ns.sub  IN A    192.0.2.254
"""

HOSTS = """192.0.2.10 web.hosts.test
2001:db8::10 web.hosts.test
192.0.2.11 db.hosts.test db2.hosts.test
192.0.2.12 outside.example.com
"""

BIG_RECORDS = 3000


def big_zone() -> str:
    lines = ["$TTL 300", "$ORIGIN big.test.",
             "@ IN SOA ns.big.test. hostmaster.big.test. 7 7200 1800 86400 300",
             "@ IN NS ns.big.test.", "ns IN A 192.0.2.1"]
    for i in range(BIG_RECORDS):
        lines.append(f"host-{i} IN A 10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        lines.append(f'host-{i} IN TXT "record number {i} of the big zone"')
    return "\n".join(lines) + "\n"


def coredns_cluster() -> list[dict]:
    """handler_test.go's svcIndex and epsIndex as snapshot objects."""
    return [
        namespace("testns"), namespace("kube-system"), namespace("unexposedns"),
        service("kubedns", "kube-system", ["10.0.0.10"], [("dns", 53, "UDP")]),
        slice_("kubedns", "kubedns", [endpoint("172.0.0.100")], "kube-system",
               [("dns", 53, "UDP")]),
        service("svc1", "testns", ["10.0.0.1"], [("http", 80, "TCP")]),
        slice_("svc1-slice1", "svc1", [endpoint("172.0.0.1", hostname="ep1a")], "testns",
               [("http", 80, "TCP")]),
        service("svcempty", "testns", ["10.0.0.1"], [("http", 80, "TCP")]),
        slice_("svcempty-slice1", "svcempty", [], "testns", [("http", 80, "TCP")]),
        service("svc6", "testns", ["1234:abcd::1"], [("http", 80, "TCP")]),
        service("hdls1", "testns", headless=True),
        slice_("hdls1-slice1", "hdls1",
               [endpoint("172.0.0.2"), endpoint("172.0.0.3"),
                endpoint("172.0.0.4", hostname="dup-name"),
                endpoint("172.0.0.5", hostname="dup-name")], "testns", [("http", 80, "TCP")]),
        slice_("hdls1-slice2", "hdls1", [endpoint("5678:abcd::1"), endpoint("5678:abcd::2")],
               "testns", [("http", 80, "TCP")], family="IPv6"),
        service("external", "testns", external="ext.interwebs.test", ports=[("http", 80, "TCP")]),
        service("external-to-service", "testns", external="svc1.testns.svc.cluster.local.",
                ports=[("http", 80, "TCP")]),
        service("hdlsprtls", "testns", headless=True),
        slice_("hdlsprtls-slice1", "hdlsprtls", [endpoint("172.0.0.20")], "testns"),
        service("svc1", "unexposedns", ["10.0.0.2"], [("http", 80, "TCP")]),
        service("svc-dual-stack", "testns", ["10.0.0.3", "10::3"], [("http", 80, "TCP")]),
    ]


# xfr_test.go expectedZone; ns.dns is fastdns's bind address (CoreDNS: its pod IP 10.0.0.10)
EXPECTED_K8S = """
cluster.local.	5	IN	SOA	ns.dns.cluster.local. hostmaster.cluster.local. 3 7200 1800 86400 5
cluster.local.	5	IN	NS	ns.dns.cluster.local.
ns.dns.cluster.local.	5	IN	A	127.0.0.1
external.testns.svc.cluster.local.	5	IN	CNAME	ext.interwebs.test.
external-to-service.testns.svc.cluster.local.	5	IN	CNAME	svc1.testns.svc.cluster.local.
hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.2
172-0-0-2.hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.2
_http._tcp.hdls1.testns.svc.cluster.local.	5	IN	SRV	0 16 80 172-0-0-2.hdls1.testns.svc.cluster.local.
hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.3
172-0-0-3.hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.3
_http._tcp.hdls1.testns.svc.cluster.local.	5	IN	SRV	0 16 80 172-0-0-3.hdls1.testns.svc.cluster.local.
hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.4
dup-name.hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.4
_http._tcp.hdls1.testns.svc.cluster.local.	5	IN	SRV	0 16 80 dup-name.hdls1.testns.svc.cluster.local.
hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.5
dup-name.hdls1.testns.svc.cluster.local.	5	IN	A	172.0.0.5
_http._tcp.hdls1.testns.svc.cluster.local.	5	IN	SRV	0 16 80 dup-name.hdls1.testns.svc.cluster.local.
hdls1.testns.svc.cluster.local.	5	IN	AAAA	5678:abcd::1
5678-abcd--1.hdls1.testns.svc.cluster.local.	5	IN	AAAA	5678:abcd::1
_http._tcp.hdls1.testns.svc.cluster.local.	5	IN	SRV	0 16 80 5678-abcd--1.hdls1.testns.svc.cluster.local.
hdls1.testns.svc.cluster.local.	5	IN	AAAA	5678:abcd::2
5678-abcd--2.hdls1.testns.svc.cluster.local.	5	IN	AAAA	5678:abcd::2
_http._tcp.hdls1.testns.svc.cluster.local.	5	IN	SRV	0 16 80 5678-abcd--2.hdls1.testns.svc.cluster.local.
hdlsprtls.testns.svc.cluster.local.	5	IN	A	172.0.0.20
172-0-0-20.hdlsprtls.testns.svc.cluster.local.	5	IN	A	172.0.0.20
kubedns.kube-system.svc.cluster.local.	5	IN	A	10.0.0.10
kubedns.kube-system.svc.cluster.local.	5	IN	SRV	0 100 53 kubedns.kube-system.svc.cluster.local.
_dns._udp.kubedns.kube-system.svc.cluster.local.	5	IN	SRV	0 100 53 kubedns.kube-system.svc.cluster.local.
svc-dual-stack.testns.svc.cluster.local.	5	IN	A	10.0.0.3
svc-dual-stack.testns.svc.cluster.local.	5	IN	AAAA	10::3
svc-dual-stack.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svc-dual-stack.testns.svc.cluster.local.
_http._tcp.svc-dual-stack.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svc-dual-stack.testns.svc.cluster.local.
svc1.testns.svc.cluster.local.	5	IN	A	10.0.0.1
svc1.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svc1.testns.svc.cluster.local.
_http._tcp.svc1.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svc1.testns.svc.cluster.local.
svc6.testns.svc.cluster.local.	5	IN	AAAA	1234:abcd::1
svc6.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svc6.testns.svc.cluster.local.
_http._tcp.svc6.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svc6.testns.svc.cluster.local.
svcempty.testns.svc.cluster.local.	5	IN	A	10.0.0.1
svcempty.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svcempty.testns.svc.cluster.local.
_http._tcp.svcempty.testns.svc.cluster.local.	5	IN	SRV	0 100 80 svcempty.testns.svc.cluster.local.
cluster.local.	5	IN	SOA	ns.dns.cluster.local. hostmaster.cluster.local. 3 7200 1800 86400 5
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("transfer")
    (tmp / "db.example.org").write_text(DB_EXAMPLE_ORG)
    (tmp / "db.big.test").write_text(big_zone())
    (tmp / "hosts").write_text(HOSTS)
    write_snapshot(tmp / "cluster.yaml", coredns_cluster())
    mport = free_port()
    (tmp / "Corefile").write_text(f"""example.org big.test {{
    bind 127.0.0.1
    prometheus 127.0.0.1:{mport}
    file db.example.org example.org
    file db.big.test big.test
    transfer example.org {{
        to {ALLOWED}
    }}
    transfer big.test {{
        to *
    }}
}}
hosts.test {{
    bind 127.0.0.1
    hosts hosts hosts.test {{
        ttl 60
    }}
    transfer {{
        to * {DENIED}
    }}
}}
cluster.local {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot cluster.yaml
        namespaces testns kube-system
        pods insecure
    }}
    transfer {{
        to {ALLOWED}:5300
    }}
}}
""")
    with ServeProcess(tmp / "Corefile", workers=2, probe=("example.org.", "SOA")) as s:
        s.metrics_port = mport  # type: ignore[attr-defined]
        assert wait_until(lambda: ask(s, "svc1.testns.svc.cluster.local.", "A").rcode()
                          == NOERROR, timeout=15)
        yield s


def ask(s: ServeProcess, qname: str, qtype: str, tcp: bool = False,
        source: str | None = None) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, use_edns=False)
    if tcp:
        return dns.query.tcp(q, s.host, port=s.port, timeout=5, source=source)
    return dns.query.udp(q, s.host, port=s.port, timeout=5, source=source)


def transfer(s: ServeProcess, zone: str, source: str = ALLOWED, rdtype: str = "AXFR",
             serial: int = 0) -> list[dns.message.Message]:
    return list(dns.query.xfr(s.host, zone, rdtype=dns.rdatatype.from_text(rdtype),
                              port=s.port, timeout=10, lifetime=30, source=source,
                              serial=serial, relativize=False))


def rows(rrsets) -> set[tuple[str, int, str, str]]:  # type: ignore[no-untyped-def]
    return {(rrset.name.to_text().lower(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype),
             rd.to_text()) for rrset in rrsets for rd in rrset}


def stream(msgs: list[dns.message.Message]) -> list[dns.rrset.RRset]:
    return [rrset for m in msgs for rrset in m.answer]


def zone_rows(text: str, origin: str) -> set[tuple[str, int, str, str]]:
    z = dns.zone.from_text(text, origin, relativize=False, check_origin=False)
    return {(name.to_text().lower(), rds.ttl, dns.rdatatype.to_text(rds.rdtype), rd.to_text())
            for name, rds in z.iterate_rdatasets() for rd in rds}


def _first_last_soa(msgs: list[dns.message.Message]) -> None:
    recs = [(rrset.rdtype, rd) for rrset in stream(msgs) for rd in rrset]
    assert recs[0][0] == dns.rdatatype.SOA and recs[-1][0] == dns.rdatatype.SOA
    assert recs[0][1] == recs[-1][1]
    assert sum(1 for t, _ in recs if t == dns.rdatatype.SOA) == 2


# -- file -------------------------------------------------------------------------------

def test_file_axfr_is_the_zone_file(srv: ServeProcess) -> None:
    msgs = transfer(srv, "example.org.")
    _first_last_soa(msgs)
    for m in msgs:
        assert m.rcode() == NOERROR and m.flags & 0x0400
        assert m.question[0].rdtype == dns.rdatatype.AXFR
    assert rows(stream(msgs)) == zone_rows(DB_EXAMPLE_ORG, "example.org.")


def test_file_inbound_xfr_builds_the_same_zone(srv: ServeProcess) -> None:
    got = dns.zone.Zone("example.org.", relativize=False)
    dns.query.inbound_xfr(srv.host, got, port=srv.port, timeout=10, lifetime=30, source=ALLOWED)
    want = dns.zone.from_text(DB_EXAMPLE_ORG, "example.org.", relativize=False)
    assert got == want


def test_dig_axfr(srv: ServeProcess) -> None:
    if shutil.which("dig") is None:
        pytest.skip("no dig")
    out = subprocess.run(["dig", f"@{srv.host}", "-p", str(srv.port), "-b", ALLOWED,
                          "example.org.", "AXFR", "+nocmd", "+nostats", "+nocomments"],
                         capture_output=True, text=True, timeout=30).stdout
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith(";")]
    got = dns.zone.from_text("\n".join(lines[:-1]), "example.org.", relativize=False)
    assert got == dns.zone.from_text(DB_EXAMPLE_ORG, "example.org.", relativize=False)
    assert lines[0].split()[3] == lines[-1].split()[3] == "SOA"


def test_large_zone_is_split_over_several_messages(srv: ServeProcess) -> None:
    msgs = transfer(srv, "big.test.", source=DENIED)          # to *: any source
    assert len(msgs) > 3
    for m in msgs:
        assert len(m.to_wire()) < 65535
    _first_last_soa(msgs)
    got = rows(stream(msgs))
    assert got == zone_rows(big_zone(), "big.test.")
    assert len(got) == 2 * BIG_RECORDS + 3


def test_ixfr(srv: ServeProcess) -> None:
    # the client's serial is current: one message with the SOA
    msgs = transfer(srv, "example.org.", rdtype="IXFR", serial=2024010101)
    recs = [rd for rrset in stream(msgs) for rd in rrset]
    assert len(msgs) == 1 and len(recs) == 1 and recs[0].serial == 2024010101
    # an older one: the whole zone, AXFR-style
    msgs = transfer(srv, "example.org.", rdtype="IXFR", serial=2023)
    assert rows(stream(msgs)) == zone_rows(DB_EXAMPLE_ORG, "example.org.")
    # IXFR without the client's SOA: SERVFAIL (as CoreDNS)
    q = dns.message.make_query("example.org.", "IXFR", use_edns=False)
    r = dns.query.tcp(q, srv.host, port=srv.port, timeout=5, source=ALLOWED)
    assert r.rcode() == SERVFAIL


# -- the ACL and the transport -------------------------------------------------------------

def test_to_refuses_other_sources(srv: ServeProcess) -> None:
    r = ask(srv, "example.org.", "AXFR", tcp=True, source=DENIED)
    assert r.rcode() == REFUSED and not r.answer
    with pytest.raises(dns.xfr.TransferError):
        transfer(srv, "example.org.", source=DENIED)
    # a port in `to` does not matter (CoreDNS compares the host)
    assert transfer(srv, "cluster.local.", source=ALLOWED)
    assert ask(srv, "cluster.local.", "AXFR", tcp=True, source=DENIED).rcode() == REFUSED


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_udp_is_refused(srv: ServeProcess, qtype: str) -> None:
    r = ask(srv, "example.org.", qtype, source=ALLOWED)
    assert r.rcode() == REFUSED and not r.answer
    assert ask(srv, "big.test.", qtype).rcode() == REFUSED


def test_names_that_are_not_zones_go_on(srv: ServeProcess) -> None:
    # below the zone: not a transferable zone; the file table REFUSEs it (in C)
    r = ask(srv, "sub.example.org.", "AXFR", tcp=True, source=ALLOWED)
    assert r.rcode() == REFUSED
    r = ask(srv, "svc.cluster.local.", "AXFR", tcp=True, source=ALLOWED)
    assert r.rcode() == REFUSED and not r.answer


def test_zone_name_case_insensitive(srv: ServeProcess) -> None:
    # transfer_test.go TestAXFRZoneMatchCaseInsensitive
    msgs = transfer(srv, "ExAmPlE.OrG.")
    assert msgs[0].question[0].name.to_text() == "ExAmPlE.OrG."
    assert rows(stream(msgs)) == zone_rows(DB_EXAMPLE_ORG, "example.org.")


# -- hosts ---------------------------------------------------------------------------------

def test_hosts_zone(srv: ServeProcess) -> None:
    msgs = transfer(srv, "hosts.test.", source=DENIED)
    _first_last_soa(msgs)
    got = rows(stream(msgs))
    soa = [r for r in got if r[2] == "SOA"]
    assert len(soa) == 1
    assert soa[0][3].startswith("ns.dns.hosts.test. hostmaster.hosts.test. ")
    assert soa[0][3].endswith(" 7200 1800 86400 60")
    assert got - set(soa) == {
        ("hosts.test.", 60, "NS", "ns.dns.hosts.test."),
        ("web.hosts.test.", 60, "A", "192.0.2.10"),
        ("web.hosts.test.", 60, "AAAA", "2001:db8::10"),
        ("db.hosts.test.", 60, "A", "192.0.2.11"),
        ("db2.hosts.test.", 60, "A", "192.0.2.11"),
    }
    again = rows(stream(transfer(srv, "hosts.test.", source=DENIED)))
    assert again == got                          # the serial is stable while the data is
    serial = int(soa[0][3].split()[2])
    one = transfer(srv, "hosts.test.", source=DENIED, rdtype="IXFR", serial=serial)
    assert len([rd for rrset in stream(one) for rd in rrset]) == 1


# -- kubernetes ----------------------------------------------------------------------------

def _no_serial(r: set[tuple[str, int, str, str]]) -> set[tuple[str, int, str, str]]:
    out = set()
    for name, ttl, t, text in r:
        if t == "SOA":
            f = text.split()
            f[2] = "0"
            text = " ".join(f)
        out.add((name, ttl, t, text))
    return out


def test_kubernetes_zone_as_coredns_lists_it(srv: ServeProcess) -> None:
    msgs = transfer(srv, "cluster.local.")
    _first_last_soa(msgs)
    want = set()
    for line in EXPECTED_K8S.strip().splitlines():
        name, ttl, _cls, t, text = line.split(None, 4)
        want.add((name, int(ttl), t, text))
    assert _no_serial(rows(stream(msgs))) == _no_serial(want)
    # CoreDNS's order: SOA, NS, the name server's address first
    first = [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
             for rrset in stream(msgs)][:3]
    assert first == [("cluster.local.", "SOA"), ("cluster.local.", "NS"),
                     ("ns.dns.cluster.local.", "A")]


def test_kubernetes_ixfr(srv: ServeProcess) -> None:
    soa = ask(srv, "cluster.local.", "SOA").answer[0][0]
    msgs = transfer(srv, "cluster.local.", rdtype="IXFR", serial=soa.serial)
    assert [rd.serial for rrset in stream(msgs) for rd in rrset] == [soa.serial]
    msgs = transfer(srv, "cluster.local.", rdtype="IXFR", serial=soa.serial - 1)
    assert rows(stream(msgs)) == rows(stream(transfer(srv, "cluster.local.")))
    assert len([rd for rrset in stream(msgs) for rd in rrset]) > 40


# -- everything else stays in C ------------------------------------------------------------

def _responses(s: ServeProcess, plugin: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/metrics",  # type: ignore[attr-defined]
                                  timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("coredns_dns_responses_total{") and f'plugin="{plugin}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_ordinary_queries_are_answered_by_the_tables(srv: ServeProcess) -> None:
    before_t, before_f = _responses(srv, "transfer"), _responses(srv, "file")
    for tcp in (False, True):
        r = ask(srv, "www.example.org.", "A", tcp=tcp, source=ALLOWED)
        assert r.rcode() == NOERROR and r.flags & 0x0400
        assert rows(r.answer) == {("www.example.org.", 3600, "CNAME", "example.org."),
                                  ("example.org.", 3600, "A", "192.0.2.1")}
        assert ask(srv, "example.org.", "SOA", tcp=tcp).answer[0][0].serial == 2024010101
        assert ask(srv, "svc1.testns.svc.cluster.local.", "A", tcp=tcp).answer[0][0].address \
            == "10.0.0.1"
        assert ask(srv, "web.hosts.test.", "A", tcp=tcp).answer[0][0].address == "192.0.2.10"
    assert wait_until(lambda: _responses(srv, "file") >= before_f + 4, timeout=5)
    assert _responses(srv, "transfer") == before_t
    transfer(srv, "example.org.")
    assert wait_until(lambda: _responses(srv, "transfer") > before_t, timeout=5)


def test_engine_stage_takes_only_transfers() -> None:
    from fastdns.config import parse
    from fastdns.plugins.runtime import engine_config

    plan = parse("example.org {\n hosts {\n  192.0.2.1 a.example.org\n }\n"
                 " transfer {\n  to *\n }\n}\n", filename="C", env={})
    stages = engine_config(plan)["blocks"][0]["stages"]
    assert [(st["kind"], st["plugin"]) for st in stages] == [("python", "transfer"),
                                                           ("table", "hosts")]
    assert stages[0]["qtypes"] == [252, 251]
    assert stages[0]["zones_text"] == ["example.org."]


def test_loopback_aliases_exist() -> None:
    for ip in (ALLOWED, DENIED):
        with socket.socket() as s:
            s.bind((ip, 0))
