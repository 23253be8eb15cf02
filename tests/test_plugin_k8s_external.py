"""``k8s_external`` served: CoreDNS's external_test.go and apex_test.go tables asked of a
real ``fastdns serve`` (UDP and TCP), snapshot changes, the live API, and the compiler.

The CoreDNS fixtures (plugin/k8s_external/external_test.go ``svcIndexExternal`` /
``epIndexExternal``) are written as Kubernetes objects in a snapshot file: svc1 and svc6
have ``spec.externalIPs``, svc11 and svc12 are LoadBalancers whose ingress is an IP and a
host name, svc-headless is headless with two endpoints.  The kubernetes line exposes
``testns`` only, as the Go test's ``k.Namespaces``; the server binds 127.0.0.1, so the
name server's address is 127.0.0.1, what the Go test's ``externalAddress`` returns.
"""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from fastdns.plugins.k8s_external.compile import ExternalCompiler
from fastdns.plugins.k8s_external.conf import K8sExternalConf
from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.plugins.kubernetes.objects import decode_object
from tests.k8s_support import (
    FakeAPI, endpoint, namespace, rrsets, section, service, slice_, wait_for,
)
from tests.server_support import _no_serial, write_snapshot_atomic

ZONE = "example.com."
SOA = "example.com. 5 IN SOA ns1.dns.example.com. hostmaster.dns.example.com. 0 7200 1800 86400 5"


def ext_service(name: str, ns: str = "testns", cluster_ip: str = "10.0.0.1",
                external_ips: list[str] | None = None, ingress: list[dict] | None = None,
                ports=(("http", 80, "TCP"),), kind: str = "ClusterIP") -> dict:
    svc = service(name, ns, [cluster_ip], list(ports))
    svc["spec"]["type"] = kind
    if external_ips:
        svc["spec"]["externalIPs"] = external_ips
    if ingress is not None:
        svc["status"] = {"loadBalancer": {"ingress": ingress}}
    return svc


def coredns_objects() -> list[dict]:
    """external_test.go's services and endpoints (plus an unexposed namespace)."""
    return [
        namespace("testns"), namespace("other"),
        ext_service("svc1", external_ips=["1.2.3.4"]),
        ext_service("svc6", cluster_ip="10.0.0.3", external_ips=["1:2::5"]),
        ext_service("svc11", cluster_ip="10.0.0.3", ingress=[{"ip": "2.3.4.5"}],
                    kind="LoadBalancer"),
        ext_service("svc12", cluster_ip="10.0.0.3", ingress=[{"hostname": "dummy.hostname"}],
                    kind="LoadBalancer"),
        service("svc-headless", "testns", headless=True, ports=[("http", 80, "TCP")]),
        slice_("svc-headless-1", "svc-headless",
               [endpoint("1.2.3.4", hostname="endpoint-svc-0", pod="endpoint-svc-0"),
                endpoint("1.2.3.5", hostname="endpoint-svc-1", pod="endpoint-svc-1")],
               "testns", [("http", 80, "TCP")]),
        # not exposed (namespaces testns): nothing of it is answered
        ext_service("hidden", "other", external_ips=["7.7.7.7"]),
        # an in-cluster service: the kubernetes line still answers cluster.local
        service("web", "testns", ["10.96.0.7"], [("http", 80, "TCP")]),
    ]


COREFILE = """. {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot cluster.yaml
        namespaces testns
    }}
    k8s_external example.com in-addr.arpa {{
        headless
    }}
    {extra}
}}
"""

# CoreDNS's TestExternal table: (qname, qtype, rcode, answer, authority, additional).
# The SOA is the one apex.go writes (its mailbox is hostmaster.<apex>.<zone>; the Go
# table's "hostmaster.example.com." is not compared there); serials are not compared.
EXTERNAL_CASES = [
    ("4.3.2.1.in-addr.arpa.", "PTR", "NOERROR",
     ["4.3.2.1.in-addr.arpa. 5 IN PTR svc1.testns.example.com."], [], []),
    ("svc1.testns.example.com.", "PTR", "NOERROR", [], [SOA], []),
    ("not-existing.testns.example.com.", "PTR", "NXDOMAIN", [], [SOA], []),
    ("svc1.testns.example.com.", "A", "NOERROR", ["svc1.testns.example.com. 5 IN A 1.2.3.4"],
     [], []),
    ("svc1.testns.example.com.", "SRV", "NOERROR",
     ["svc1.testns.example.com. 5 IN SRV 0 100 80 svc1.testns.example.com."], [],
     ["svc1.testns.example.com. 5 IN A 1.2.3.4"]),
    ("*._not-udp-or-tcp.svc1.testns.example.com.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("_http._tcp.svc1.testns.example.com.", "SRV", "NOERROR",
     ["_http._tcp.svc1.testns.example.com. 5 IN SRV 0 100 80 svc1.testns.example.com."], [],
     ["svc1.testns.example.com. 5 IN A 1.2.3.4"]),
    ("svc1.testns.example.com.", "AAAA", "NOERROR", [], [SOA], []),
    ("svc0.testns.example.com.", "AAAA", "NXDOMAIN", [], [SOA], []),
    ("svc0.testns.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("svc0.svc-nons.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("svc6.testns.example.com.", "AAAA", "NOERROR", ["svc6.testns.example.com. 5 IN AAAA 1:2::5"],
     [], []),
    ("_http._tcp.svc6.testns.example.com.", "SRV", "NOERROR",
     ["_http._tcp.svc6.testns.example.com. 5 IN SRV 0 100 80 svc6.testns.example.com."], [],
     ["svc6.testns.example.com. 5 IN AAAA 1:2::5"]),
    ("svc6.testns.example.com.", "SRV", "NOERROR",
     ["svc6.testns.example.com. 5 IN SRV 0 100 80 svc6.testns.example.com."], [],
     ["svc6.testns.example.com. 5 IN AAAA 1:2::5"]),
    ("testns.example.com.", "A", "NOERROR", [], [SOA], []),
    ("testns.example.com.", "SOA", "NOERROR", [], [SOA], []),
    ("svc11.testns.example.com.", "A", "NOERROR", ["svc11.testns.example.com. 5 IN A 2.3.4.5"],
     [], []),
    ("_http._tcp.svc11.testns.example.com.", "SRV", "NOERROR",
     ["_http._tcp.svc11.testns.example.com. 5 IN SRV 0 100 80 svc11.testns.example.com."], [],
     ["svc11.testns.example.com. 5 IN A 2.3.4.5"]),
    ("svc11.testns.example.com.", "SRV", "NOERROR",
     ["svc11.testns.example.com. 5 IN SRV 0 100 80 svc11.testns.example.com."], [],
     ["svc11.testns.example.com. 5 IN A 2.3.4.5"]),
    ("svc12.testns.example.com.", "A", "NOERROR",
     ["svc12.testns.example.com. 5 IN CNAME dummy.hostname."], [], []),
    ("_http._tcp.svc12.testns.example.com.", "SRV", "NOERROR",
     ["_http._tcp.svc12.testns.example.com. 5 IN SRV 0 100 80 dummy.hostname."], [], []),
    ("svc12.testns.example.com.", "SRV", "NOERROR",
     ["svc12.testns.example.com. 5 IN SRV 0 100 80 dummy.hostname."], [], []),
    ("svc-headless.testns.example.com.", "A", "NOERROR",
     ["svc-headless.testns.example.com. 5 IN A 1.2.3.4",
      "svc-headless.testns.example.com. 5 IN A 1.2.3.5"], [], []),
    ("svc-headless.testns.example.com.", "SRV", "NOERROR",
     ["svc-headless.testns.example.com. 5 IN SRV 0 50 80 endpoint-svc-0.svc-headless.testns.example.com.",
      "svc-headless.testns.example.com. 5 IN SRV 0 50 80 endpoint-svc-1.svc-headless.testns.example.com."],
     [], ["endpoint-svc-0.svc-headless.testns.example.com. 5 IN A 1.2.3.4",
          "endpoint-svc-1.svc-headless.testns.example.com. 5 IN A 1.2.3.5"]),
    ("_http._tcp.svc-headless.testns.example.com.", "SRV", "NOERROR",
     ["_http._tcp.svc-headless.testns.example.com. 5 IN SRV 0 50 80 endpoint-svc-0.svc-headless.testns.example.com.",
      "_http._tcp.svc-headless.testns.example.com. 5 IN SRV 0 50 80 endpoint-svc-1.svc-headless.testns.example.com."],
     [], ["endpoint-svc-0.svc-headless.testns.example.com. 5 IN A 1.2.3.4",
          "endpoint-svc-1.svc-headless.testns.example.com. 5 IN A 1.2.3.5"]),
    ("endpoint-svc-0.svc-headless.testns.example.com.", "SRV", "NOERROR",
     ["endpoint-svc-0.svc-headless.testns.example.com. 5 IN SRV 0 100 80 endpoint-svc-0.svc-headless.testns.example.com."],
     [], ["endpoint-svc-0.svc-headless.testns.example.com. 5 IN A 1.2.3.4"]),
    ("endpoint-svc-1.svc-headless.testns.example.com.", "SRV", "NOERROR",
     ["endpoint-svc-1.svc-headless.testns.example.com. 5 IN SRV 0 100 80 endpoint-svc-1.svc-headless.testns.example.com."],
     [], ["endpoint-svc-1.svc-headless.testns.example.com. 5 IN A 1.2.3.5"]),
    ("endpoint-svc-0.svc-headless.testns.example.com.", "A", "NOERROR",
     ["endpoint-svc-0.svc-headless.testns.example.com. 5 IN A 1.2.3.4"], [], []),
    ("endpoint-svc-1.svc-headless.testns.example.com.", "A", "NOERROR",
     ["endpoint-svc-1.svc-headless.testns.example.com. 5 IN A 1.2.3.5"], [], []),
]

# CoreDNS's TestApex table (apex_test.go)
APEX_CASES = [
    ("example.com.", "SOA", "NOERROR", [SOA], [], []),
    ("example.com.", "NS", "NOERROR", ["example.com. 5 IN NS ns1.dns.example.com."], [],
     ["ns1.dns.example.com. 5 IN A 127.0.0.1"]),
    ("example.com.", "SRV", "NOERROR", [], [SOA], []),
    ("dns.example.com.", "SRV", "NOERROR", [], [SOA], []),
    ("dns.example.com.", "NS", "NOERROR", [], [SOA], []),
    ("ns1.dns.example.com.", "SRV", "NOERROR", [], [SOA], []),
    ("ns1.dns.example.com.", "NS", "NOERROR", [], [SOA], []),
    ("ns1.dns.example.com.", "AAAA", "NOERROR", [], [SOA], []),
    ("ns1.dns.example.com.", "A", "NOERROR", ["ns1.dns.example.com. 5 IN A 127.0.0.1"], [], []),
]

# beyond the Go tables, from the same code paths (external.go, apex.go, msg_to_dns.go)
MORE_CASES = [
    # an endpoint label below a service with external IPs is ignored: the service's answer
    ("anything.svc1.testns.example.com.", "A", "NOERROR",
     ["anything.svc1.testns.example.com. 5 IN A 1.2.3.4"], [], []),
    ("a-much-longer-first-label.svc1.testns.example.com.", "SRV", "NOERROR",
     ["a-much-longer-first-label.svc1.testns.example.com. 5 IN SRV 0 100 80 svc1.testns.example.com."],
     [], ["svc1.testns.example.com. 5 IN A 1.2.3.4"]),
    # CoreDNS strips one leading underscore of the port and protocol labels
    ("http.tcp.svc1.testns.example.com.", "SRV", "NOERROR",
     ["http.tcp.svc1.testns.example.com. 5 IN SRV 0 100 80 svc1.testns.example.com."], [],
     ["svc1.testns.example.com. 5 IN A 1.2.3.4"]),
    ("_https._tcp.svc1.testns.example.com.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("a.b.c.svc1.testns.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("svc12.testns.example.com.", "AAAA", "NOERROR",
     ["svc12.testns.example.com. 5 IN CNAME dummy.hostname."], [], []),
    ("svc6.testns.example.com.", "A", "NOERROR", [], [SOA], []),
    ("svc1.testns.example.com.", "TXT", "NOERROR", [], [SOA], []),
    # not exposed, or a name of the apex subdomain
    ("hidden.other.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("other.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("x.dns.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("ns2.dns.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    ("example.com.", "A", "NOERROR", [], [SOA], []),
    # an in-cluster service with no external IP is not in the external zone...
    ("web.testns.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    # ...but headless makes its endpoints' names exist (here: none)
    ("endpoint-svc-2.svc-headless.testns.example.com.", "A", "NXDOMAIN", [], [SOA], []),
    # a reverse name without a service, and other types of one with
    ("9.9.9.9.in-addr.arpa.", "PTR", "NXDOMAIN",
     [], ["in-addr.arpa. 5 IN SOA ns1.dns.in-addr.arpa. hostmaster.dns.in-addr.arpa. 0 7200 1800 86400 5"], []),
    ("4.3.2.1.in-addr.arpa.", "A", "NXDOMAIN",
     [], ["in-addr.arpa. 5 IN SOA ns1.dns.in-addr.arpa. hostmaster.dns.in-addr.arpa. 0 7200 1800 86400 5"], []),
]




def check(resp: dns.message.Message, qname: str, rcode: str, answer: list[str],
          authority: list[str], additional: list[str]) -> None:
    got = {"rcode": dns.rcode.to_text(resp.rcode()), "aa": bool(resp.flags & dns.flags.AA),
           "answer": _no_serial(section(resp.answer)),
           "authority": _no_serial(section(resp.authority)),
           "additional": _no_serial(section(resp.additional))}
    want = {"rcode": rcode, "aa": True, "answer": _no_serial(rrsets(answer)),
            "authority": _no_serial(rrsets(authority)),
            "additional": _no_serial(rrsets(additional))}
    assert got == want, qname
    assert resp.question[0].name.to_text() == qname


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("k8s_external")
    write_snapshot_atomic(d / "cluster.yaml", coredns_objects())
    (d / "Corefile").write_text(COREFILE.format(extra=""))
    with ServeProcess(d / "Corefile", workers=2, probe=(ZONE, "SOA")) as sp:
        yield sp


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("case", EXTERNAL_CASES + APEX_CASES + MORE_CASES,
                         ids=lambda c: f"{c[0]}{c[1]}")
def test_coredns_tables(server, case, tcp: bool) -> None:
    qname, qtype, *want = case
    check(server.query(qname, qtype, tcp=tcp), qname, *want)


def test_question_echoed_as_asked_and_soa_serial_stable(server) -> None:
    r = server.query("SVC1.TestNS.Example.COM.", "A")
    assert r.question[0].name.to_text() == "SVC1.TestNS.Example.COM."
    assert [rd.address for rd in r.answer[0]] == ["1.2.3.4"]
    assert r.answer[0].name.to_text() == "SVC1.TestNS.Example.COM."
    serials = {server.query(n, "SOA").answer[0][0].serial if n == ZONE else
               server.query(n, "A").authority[0][0].serial
               for n in (ZONE, "nope.testns.example.com.", "testns.example.com.")}
    assert len(serials) == 1


def test_kubernetes_zone_still_answered_by_kubernetes(server) -> None:
    r = server.query("web.testns.svc.cluster.local.", "A")
    assert [rd.address for rd in r.answer[0]] == ["10.96.0.7"]
    # the external IPs are not the cluster answers
    r = server.query("svc1.testns.svc.cluster.local.", "A")
    assert [rd.address for rd in r.answer[0]] == ["10.0.0.1"]


def test_other_zones_are_not_k8s_externals(server) -> None:
    r = server.query("svc1.testns.example.org.", "A")
    assert r.rcode() == dns.rcode.SERVFAIL          # no next plugin: as CoreDNS


# -- snapshot changes, apex options, the server's own service ---------------------------

def test_snapshot_change_propagates_incrementally(tmp_path: Path) -> None:
    objs = coredns_objects()
    write_snapshot_atomic(tmp_path / "cluster.yaml", objs)
    (tmp_path / "Corefile").write_text(""". {
    bind 127.0.0.1
    kubernetes cluster.local {
        snapshot cluster.yaml
        ttl 30
    }
    k8s_external example.org {
        apex testdns
        ttl 60
    }
}
""")
    with ServeProcess(tmp_path / "Corefile", workers=2, probe=("example.org.", "SOA")) as sp:
        soa = sp.query("example.org.", "SOA").answer[0]
        assert (soa.ttl, soa[0].mname.to_text(), soa[0].rname.to_text(), soa[0].minimum) == \
            (60, "ns1.testdns.example.org.", "hostmaster.testdns.example.org.", 60)
        assert sp.query("ns1.testdns.example.org.", "A").answer[0][0].address == "127.0.0.1"
        assert sp.query("ns1.dns.example.org.", "A").rcode() == dns.rcode.NXDOMAIN
        r = sp.query("svc1.testns.example.org.", "SRV")
        # SRV records carry the kubernetes ttl, addresses the k8s_external one (as CoreDNS)
        assert (r.answer[0].ttl, r.additional[0].ttl) == (30, 60)
        # without headless, headless services and endpoint names are not answered
        assert sp.query("svc-headless.testns.example.org.", "A").rcode() == dns.rcode.NXDOMAIN
        # the namespaces line is absent: every namespace is exposed
        assert sp.query("hidden.other.example.org.", "A").answer[0][0].address == "7.7.7.7"

        # change: svc1 gets a second IP and an IPv6 ingress; svc6 loses its IP; a new
        # LoadBalancer; the server's own service (an endpoint at 127.0.0.1) appears
        objs = [o for o in objs if o["metadata"]["name"] not in ("svc1", "svc6")]
        objs += [ext_service("svc1", external_ips=["1.2.3.4", "1.2.3.44"],
                             ingress=[{"ip": "fd00::44"}]),
                 ext_service("svc6", cluster_ip="10.0.0.3"),
                 ext_service("lb", ingress=[{"ip": "5.5.5.5"}], kind="LoadBalancer"),
                 ext_service("kube-dns", "kube-system", cluster_ip="10.96.0.10",
                             external_ips=["192.0.2.53"], ports=[("dns", 53, "UDP")]),
                 namespace("kube-system"),
                 slice_("kube-dns-1", "kube-dns", [endpoint("127.0.0.1")], "kube-system",
                        [("dns", 53, "UDP")])]
        write_snapshot_atomic(tmp_path / "cluster.yaml", objs)

        def changed() -> bool:
            r = sp.query("lb.testns.example.org.", "A")
            return r.rcode() == dns.rcode.NOERROR and bool(r.answer)

        wait_for(changed, timeout=10, what="the snapshot change")
        for tcp in (False, True):
            r = sp.query("svc1.testns.example.org.", "A", tcp=tcp)
            assert sorted(rd.address for rd in r.answer[0]) == ["1.2.3.4", "1.2.3.44"]
            r = sp.query("svc1.testns.example.org.", "AAAA", tcp=tcp)
            assert [rd.address for rd in r.answer[0]] == ["fd00::44"]
            r = sp.query("svc1.testns.example.org.", "SRV", tcp=tcp)
            # three records (two IPs and the ingress) for one port: weight 33 each, one SRV
            assert [(rd.weight, rd.port) for rd in r.answer[0]] == [(33, 80)]
            assert _no_serial(section(r.additional)) == _no_serial(rrsets([
                "svc1.testns.example.org. 60 IN A 1.2.3.4",
                "svc1.testns.example.org. 60 IN A 1.2.3.44",
                "svc1.testns.example.org. 60 IN AAAA fd00::44"]))
            assert sp.query("svc6.testns.example.org.", "AAAA", tcp=tcp).rcode() == \
                dns.rcode.NXDOMAIN
            # the name server's address is now its service's external IP (CoreDNS's nsAddrs)
            r = sp.query("ns1.testdns.example.org.", "A", tcp=tcp)
            assert [rd.address for rd in r.answer[0]] == ["192.0.2.53"]
            r = sp.query("example.org.", "NS", tcp=tcp)
            assert [rd.address for rd in r.additional[0]] == ["192.0.2.53"]
        # a broken file keeps the last good state
        (tmp_path / "cluster.yaml").write_text("items: [")
        import time
        time.sleep(1.0)
        assert sp.query("lb.testns.example.org.", "A").answer[0][0].address == "5.5.5.5"


def test_fallthrough_passes_nxdomain_only(tmp_path: Path) -> None:
    write_snapshot_atomic(tmp_path / "cluster.yaml", coredns_objects())
    with StubUpstream(records={("svc0.testns.example.com.", "A"): ["10.10.10.10"],
                               ("x.dns.example.com.", "A"): ["10.10.10.11"]}) as up:
        (tmp_path / "Corefile").write_text(f""". {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot cluster.yaml
    }}
    k8s_external example.com {{
        fallthrough
    }}
    forward . {up.hostport}
}}
""")
        with ServeProcess(tmp_path / "Corefile", workers=1, probe=(ZONE, "SOA")) as sp:
            r = sp.query("svc0.testns.example.com.", "A")
            assert [rd.address for rd in r.answer[0]] == ["10.10.10.10"]
            assert up.count("svc0.testns.example.com.") >= 1
            # NODATA is answered, not passed on
            assert sp.query("svc1.testns.example.com.", "AAAA").rcode() == dns.rcode.NOERROR
            assert up.count("svc1.testns.example.com.") == 0
            # apex.go's NXDOMAINs never fall through (CoreDNS returns before Fall.Through)
            assert sp.query("x.dns.example.com.", "A").rcode() == dns.rcode.NXDOMAIN
            assert up.count("x.dns.example.com.") == 0


# -- the live API: one watch for both plugins --------------------------------------------

def test_api_source_shared_with_kubernetes(tmp_path: Path) -> None:
    api = FakeAPI().start()
    try:
        api.put(namespace("testns"))
        api.put(ext_service("svc1", external_ips=["1.2.3.4"]))
        (tmp_path / "Corefile").write_text(f""". {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        endpoint http://127.0.0.1:{api.port}
    }}
    k8s_external example.com
}}
""")
        with ServeProcess(tmp_path / "Corefile", workers=2, probe=(ZONE, "SOA")) as sp:
            wait_for(lambda: bool(sp.query("svc1.testns.example.com.", "A").answer),
                     what="the first sync")
            for tcp in (False, True):
                assert sp.query("svc1.testns.example.com.", "A", tcp=tcp).answer[0][0].address \
                    == "1.2.3.4"
            api.put(ext_service("svc1", external_ips=["1.2.3.5"], ingress=[{"ip": "1.2.3.6"}],
                                kind="LoadBalancer"))
            api.put(ext_service("lb2", ingress=[{"hostname": "lb2.elb.example.net"}],
                                kind="LoadBalancer"))

            def moved() -> bool:
                r = sp.query("svc1.testns.example.com.", "A")
                return bool(r.answer) and sorted(rd.address for rd in r.answer[0]) == \
                    ["1.2.3.5", "1.2.3.6"]

            wait_for(moved, timeout=10, what="the watch event")
            wait_for(lambda: bool(sp.query("lb2.testns.example.com.", "A").answer),
                     timeout=10, what="the new service")
            r = sp.query("lb2.testns.example.com.", "A", tcp=True)
            assert r.answer[0].rdtype == dns.rdatatype.CNAME
            assert r.answer[0][0].target.to_text() == "lb2.elb.example.net."
            api.delete(ext_service("lb2"))
            wait_for(lambda: sp.query("lb2.testns.example.com.", "A").rcode()
                     == dns.rcode.NXDOMAIN, timeout=10, what="the deletion")
            # one list and one watch of Services for both plugins
            svc_lists = [q for path, q in api.requests
                         if path == "/api/v1/services" and q.get("watch") != "true"]
            assert len(svc_lists) == 1, api.requests
    finally:
        api.stop()


# -- the compiler alone -------------------------------------------------------------------

def _objs(raw: list[dict]) -> list:
    return [decode_object(o["kind"], o) for o in raw]


def test_compiler_incremental_matches_full() -> None:
    kconf = KubernetesConf(zones=("cluster.local.",), namespaces=("testns",))
    conf = K8sExternalConf(zones=("example.com.", "in-addr.arpa."), headless=True)
    a = ExternalCompiler(conf, conf.zones, kconf, ns_addresses=("127.0.0.1",), serial=1)
    a.full(_objs(coredns_objects()))
    changed = [o for o in coredns_objects()[:-2] if o["metadata"]["name"] != "svc1"]
    changed.append(ext_service("svc1", external_ips=["9.8.7.6"]))
    d = a.replace(_objs(changed))
    assert d and not d.full
    b = ExternalCompiler(conf, conf.zones, kconf, ns_addresses=("127.0.0.1",), serial=1)
    b.full(_objs(changed))
    assert dict(a.store.items()) == dict(b.store.items())
    # the old PTR went away, the new one came
    from fastdns import wire
    assert wire.name_from_text("4.3.2.1.in-addr.arpa.") in d.removed
    assert wire.name_from_text("6.7.8.9.in-addr.arpa.") in d.entries
    assert not a.replace(_objs(changed))      # nothing changed: an empty Delta


# -- reloads: k8s_external follows the block's current kubernetes source ---------------

def test_reload_of_the_kubernetes_line_moves_k8s_external(tmp_path: Path) -> None:
    import os
    import signal

    write_snapshot_atomic(tmp_path / "a.yaml", coredns_objects())
    write_snapshot_atomic(tmp_path / "b.yaml", [
        namespace("testns"), ext_service("svc1", external_ips=["9.9.9.1"]),
        ext_service("only-in-b", external_ips=["9.9.9.2"])])
    text = """. {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        snapshot {snap}
    }}
    k8s_external example.com
}}
"""
    conf = tmp_path / "Corefile"
    conf.write_text(text.format(snap="a.yaml"))
    with ServeProcess(conf, workers=2, probe=(ZONE, "SOA")) as sp:
        assert sp.query("svc1.testns.example.com.", "A").answer[0][0].address == "1.2.3.4"
        # only the kubernetes line changes: the k8s_external source is kept, and follows
        conf.write_text(text.format(snap="b.yaml"))
        os.kill(sp.pid, signal.SIGHUP)
        wait_for(lambda: bool(sp.query("only-in-b.testns.example.com.", "A").answer),
                 timeout=15, what="the reload")
        for tcp in (False, True):
            assert sp.query("svc1.testns.example.com.", "A", tcp=tcp).answer[0][0].address \
                == "9.9.9.1"
            assert sp.query("svc6.testns.example.com.", "AAAA", tcp=tcp).rcode() == \
                dns.rcode.NXDOMAIN
        # kept, not rebuilt: it compiled its first state once
        assert sp.output().count("k8s_external example.com.: ") == 1, sp.output()
        # and keeps following the new source's changes
        write_snapshot_atomic(tmp_path / "b.yaml", [
            namespace("testns"), ext_service("svc1", external_ips=["9.9.9.3"])])
        wait_for(lambda: sp.query("only-in-b.testns.example.com.", "A").rcode()
                 == dns.rcode.NXDOMAIN, timeout=10, what="the change after the reload")
        assert sp.query("svc1.testns.example.com.", "A").answer[0][0].address == "9.9.9.3"
        # the old file no longer matters
        write_snapshot_atomic(tmp_path / "a.yaml", [namespace("testns")])
        import time
        time.sleep(1.0)
        assert sp.query("svc1.testns.example.com.", "A").answer[0][0].address == "9.9.9.3"
