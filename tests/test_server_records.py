"""`fastdns serve` (a subprocess, 2 workers) answers every Kubernetes record kind
over UDP and TCP exactly as the Kubernetes compiler's reference lookup says;
dig agrees; the question's case is echoed (0x20)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from fastdns._testing.server import ServeProcess
from tests.server_support import Reference, make_cluster_dir, sections

CASES = [
    # ClusterIP, dual-stack, named ports (SRV with the target's A/AAAA in additional)
    ("api.prod.svc.cluster.local.", "A"),
    ("api.prod.svc.cluster.local.", "AAAA"),
    ("api.prod.svc.cluster.local.", "SRV"),
    ("_http._tcp.api.prod.svc.cluster.local.", "SRV"),
    ("_dns._udp.api.prod.svc.cluster.local.", "SRV"),
    ("_http._udp.api.prod.svc.cluster.local.", "SRV"),       # wrong protocol: NXDOMAIN
    # headless: one record per ready endpoint, hostnames, SRV per endpoint
    ("db.prod.svc.cluster.local.", "A"),
    ("db.prod.svc.cluster.local.", "AAAA"),                  # NODATA + SOA
    ("db-0.db.prod.svc.cluster.local.", "A"),
    ("db-3.db.prod.svc.cluster.local.", "A"),                # not ready
    ("10-244-3-3.db.prod.svc.cluster.local.", "A"),          # dashed IP name
    ("_pg._tcp.db.prod.svc.cluster.local.", "SRV"),
    # ExternalName
    ("ext.prod.svc.cluster.local.", "CNAME"),
    ("ext.prod.svc.cluster.local.", "A"),
    # PTR of cluster and endpoint IPs (v4 and v6)
    ("10.1.96.10.in-addr.arpa.", "PTR"),
    ("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", "PTR"),
    ("1.3.244.10.in-addr.arpa.", "PTR"),
    ("5.1.244.10.in-addr.arpa.", "A"),
    # pods insecure
    ("10-244-1-5.prod.pod.cluster.local.", "A"),
    ("10-244-1-5.prod.pod.cluster.local.", "AAAA"),
    ("not-an-ip.prod.pod.cluster.local.", "A"),
    # NXDOMAIN versus NODATA, SOA in authority
    ("nope.prod.svc.cluster.local.", "A"),
    ("api.prod.svc.cluster.local.", "MX"),
    ("prod.svc.cluster.local.", "A"),
    ("nope.cluster.local.", "A"),
    # zone records, dns-version
    ("cluster.local.", "SOA"),
    ("cluster.local.", "NS"),
    ("ns.dns.cluster.local.", "A"),
    ("dns-version.cluster.local.", "TXT"),
    ("dns-version.cluster.local.", "A"),
    # CoreDNS: SOA of any name in the zone is NODATA (even one that does not exist),
    # AXFR/IXFR are REFUSED (existing or not)
    ("nope.prod.svc.cluster.local.", "SOA"),
    ("api.prod.svc.cluster.local.", "SOA"),
    ("api.prod.svc.cluster.local.", "AXFR"),
    ("nope.prod.svc.cluster.local.", "AXFR"),
    ("cluster.local.", "IXFR"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Reference]]:
    conf = make_cluster_dir(tmp_path_factory.mktemp("records"))
    ref = Reference(conf)
    with ServeProcess(conf, workers=2) as srv:
        yield srv, ref


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("qname,qtype", CASES, ids=[f"{q}{t}" for q, t in CASES])
def test_answer_matches_reference(served, qname: str, qtype: str, transport: str) -> None:
    srv, ref = served
    got = srv.query(qname, qtype, tcp=transport == "tcp")
    assert not got.flags & dns.flags.TC
    assert sections(got) == sections(ref.message(qname, qtype))


def test_reference_covers_the_kinds(served) -> None:
    """The table above is not vacuous: it has answers, NXDOMAIN and NODATA."""
    _srv, ref = served
    msgs = [ref.message(q, t) for q, t in CASES]
    kinds = {dns.rdatatype.to_text(rr.rdtype) for m in msgs for rr in m.answer}
    assert {"A", "AAAA", "SRV", "CNAME", "PTR", "TXT", "SOA", "NS"} <= kinds
    assert any(m.rcode() == dns.rcode.NXDOMAIN for m in msgs)
    assert any(m.rcode() == dns.rcode.NOERROR and not m.answer and m.authority for m in msgs)


def _dig(srv: ServeProcess, *args: str) -> str:
    out = subprocess.run(["dig", f"@{srv.host}", "-p", str(srv.port), "+time=2", "+tries=1",
                          *args], check=False, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("args,expect", [
    (["+short", "api.prod.svc.cluster.local"], ["10.96.1.10"]),
    (["+short", "+tcp", "api.prod.svc.cluster.local", "AAAA"], ["fd00:96::10"]),
    (["+short", "_http._tcp.api.prod.svc.cluster.local", "SRV"],
     ["0 50 80 api.prod.svc.cluster.local."]),     # CoreDNS: one per cluster IP, deduped
    (["+short", "db-0.db.prod.svc.cluster.local"], ["10.244.3.1"]),
    (["+short", "-x", "10.96.1.10"], ["api.prod.svc.cluster.local."]),
    (["+short", "-x", "fd00:96::10"], ["api.prod.svc.cluster.local."]),
    (["+short", "ext.prod.svc.cluster.local", "CNAME"], ["ext.example.com."]),
    (["+short", "10-244-1-5.prod.pod.cluster.local"], ["10.244.1.5"]),
    (["+short", "dns-version.cluster.local", "TXT"], ['"1.1.0"']),
])
def test_dig_spot_checks(served, args: list[str], expect: list[str]) -> None:
    srv, _ref = served
    assert _dig(srv, *args).split("\n")[:-1] == expect


@pytest.mark.parametrize("tcp", [False, True])
def test_dig_nxdomain_and_nodata(served, tcp: bool) -> None:
    srv, _ref = served
    extra = ["+tcp"] if tcp else []
    nx = _dig(srv, *extra, "nope.prod.svc.cluster.local")
    assert "status: NXDOMAIN" in nx and "IN\tSOA\tns.dns.cluster.local." in nx
    nodata = _dig(srv, *extra, "db.prod.svc.cluster.local", "AAAA")
    assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata
    assert "IN\tSOA\tns.dns.cluster.local." in nodata
    assert " aa" in nx.split("flags:")[1].split(";")[0]


@pytest.mark.parametrize("tcp", [False, True])
def test_0x20_case_is_echoed(served, tcp: bool) -> None:
    srv, ref = served
    mixed = "aPi.PrOd.SvC.cLuStEr.LoCaL."
    q = dns.message.make_query(mixed, "A")
    wire = q.to_wire()
    if tcp:
        r = dns.query.tcp(q, srv.host, port=srv.port, timeout=2)
    else:
        r = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert r.question[0].name.to_text() == mixed          # byte-exact case
    assert wire[12:12 + len(mixed) + 1] in r.to_wire()      # the question as sent
    assert sections(r) == sections(ref.message("api.prod.svc.cluster.local.", "A"))
    out = _dig(srv, *(["+tcp"] if tcp else []), "+noall", "+question", mixed)
    assert f";{mixed}" in out
