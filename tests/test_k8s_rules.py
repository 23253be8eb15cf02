"""Table of record rules: one case per rule, its id citing the spec section or CoreDNS source.

SPEC = kubernetes/dns docs/specification.md; CD = coredns plugin/kubernetes (README,
kubernetes.go, handler_test.go) and plugin/backend_lookup.go.  Expected records are
written as zone-file lines and compared through dnspython after a wire round trip.
"""

from __future__ import annotations

import pytest

from fastdns.plugins.kubernetes.compile import ZoneCompiler
from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.plugins.kubernetes.index import ClusterIndex
from fastdns.plugins.kubernetes.objects import Compactor, decode_object
from fastdns.plugins.kubernetes.podnames import pod_answer
from fastdns.records import NOERROR, NXDOMAIN
from tests.k8s_support import (
    endpoint, namespace, pod, rrsets, section, service, slice_, to_message,
)

Z = "cluster.local."
SOA5 = f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} 1 7200 1800 86400 5"

CLUSTER = [
    namespace("ns"), namespace("other"),
    service("svc1", "ns", ["10.0.0.1"], [("http", 80, "TCP")]),
    slice_("svc1-a", "svc1", [endpoint("172.0.0.9")], "ns", [("http", 8080, "TCP")]),
    service("dual", "ns", ["10.0.0.3", "fd00::3"], [("http", 80, "TCP")]),
    service("noports", "ns", ["10.0.0.4"]),
    service("empty", "ns", ["10.0.0.5"], [("http", 80, "TCP")]),
    service("hdls", "ns", headless=True, ports=[("http", 80, "TCP")]),
    slice_("hdls-a", "hdls", [endpoint("172.0.0.2"), endpoint("172.0.0.3"),
                              endpoint("172.0.0.4", hostname="dup"),
                              endpoint("172.0.0.5", hostname="dup"),
                              endpoint("172.0.0.6", ready=False, hostname="notready"),
                              endpoint("172.0.0.7", pod="web-7")],
           "ns", [("http", 80, "TCP")]),
    slice_("hdls-b", "hdls", [endpoint("5678:abcd::1")], "ns", [("http", 80, "TCP")],
           family="IPv6"),
    service("hdls-empty", "ns", headless=True),
    service("pnr", "ns", headless=True, publish_not_ready=True),
    slice_("pnr-a", "pnr", [endpoint("172.0.1.1", ready=False)], "ns"),
    service("ext", "ns", external="ext.interwebs.test"),
    service("ext-in", "ns", external="svc1.ns.svc.cluster.local"),
    service("ext-ip", "ns", external="1.2.3.4"),
    service("hidden", "nons", ["10.0.0.9"]),
    service("lbl", "other", ["10.0.0.10"], labels={"app": "x"}),
    pod("p1", "10.244.0.7", "ns"),
]


def compiler(**kw):
    conf = KubernetesConf(**{"zones": (Z, "in-addr.arpa.", "ip6.arpa."), **kw})
    # slimmed as the sources slim them for this configuration (what they drop must not matter)
    slim = Compactor.for_conf(conf)
    objs = [decode_object(o["kind"], o, slim=slim) for o in CLUSTER]
    c = ZoneCompiler(conf, serial=1, ns_addresses=("10.96.0.10",))
    c.full(ClusterIndex.from_objects(objs, conf.labels))
    return c


# (id citing the rule, conf overrides, qname, qtype, rcode, answer lines, additional lines)
CASES = [
    ("SPEC-2.3.1-clusterip-A", {}, "svc1.ns.svc.cluster.local.", "A", NOERROR,
     ["svc1.ns.svc.cluster.local. 5 IN A 10.0.0.1"], []),
    ("SPEC-2.3.1-dualstack-AAAA", {}, "dual.ns.svc.cluster.local.", "AAAA", NOERROR,
     ["dual.ns.svc.cluster.local. 5 IN AAAA fd00::3"], []),
    ("CD-handler_test-clusterip-no-AAAA-is-NODATA", {}, "svc1.ns.svc.cluster.local.", "AAAA",
     NOERROR, [], []),
    ("SPEC-2.3.2-SRV-named-port", {}, "_http._tcp.svc1.ns.svc.cluster.local.", "SRV", NOERROR,
     ["_http._tcp.svc1.ns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.ns.svc.cluster.local."],
     ["svc1.ns.svc.cluster.local. 5 IN A 10.0.0.1"]),
    ("CD-handler_test-SRV-on-service-name-dualstack-weight-50", {},
     "dual.ns.svc.cluster.local.", "SRV", NOERROR,
     ["dual.ns.svc.cluster.local. 5 IN SRV 0 50 80 dual.ns.svc.cluster.local."],
     ["dual.ns.svc.cluster.local. 5 IN A 10.0.0.3",
      "dual.ns.svc.cluster.local. 5 IN AAAA fd00::3"]),
    ("CD-object/service.go-portless-service-has-A", {}, "noports.ns.svc.cluster.local.", "A",
     NOERROR, ["noports.ns.svc.cluster.local. 5 IN A 10.0.0.4"], []),
    ("CD-handler_test-svcempty-still-answers", {}, "empty.ns.svc.cluster.local.", "A", NOERROR,
     ["empty.ns.svc.cluster.local. 5 IN A 10.0.0.5"], []),
    ("CD-README-ignore-empty_service-NXDOMAIN", {"ignore_empty_service": True},
     "empty.ns.svc.cluster.local.", "A", NXDOMAIN, [], []),
    ("SPEC-2.3.3-PTR-cluster-ip", {}, "1.0.0.10.in-addr.arpa.", "PTR", NOERROR,
     ["1.0.0.10.in-addr.arpa. 5 IN PTR svc1.ns.svc.cluster.local."], []),
    ("SPEC-2.3.3-PTR-ip6-cluster-ip", {},
     "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", "PTR",
     NOERROR, ["3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN "
               "PTR dual.ns.svc.cluster.local."], []),
    ("SPEC-2.4.1-headless-A-ready-only", {}, "hdls.ns.svc.cluster.local.", "A", NOERROR,
     [f"hdls.ns.svc.cluster.local. 5 IN A 172.0.0.{i}" for i in (2, 3, 4, 5, 7)], []),
    ("SPEC-2.4.1-headless-AAAA", {}, "hdls.ns.svc.cluster.local.", "AAAA", NOERROR,
     ["hdls.ns.svc.cluster.local. 5 IN AAAA 5678:abcd::1"], []),
    ("SPEC-2.4.1-headless-no-ready-endpoints-NXDOMAIN", {}, "hdls-empty.ns.svc.cluster.local.",
     "A", NXDOMAIN, [], []),
    ("SPEC-2.4.1-hostname-record-multiple-IPs", {}, "dup.hdls.ns.svc.cluster.local.", "A",
     NOERROR, ["dup.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.4",
               "dup.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.5"], []),
    ("CD-kubernetes.go-endpointHostname-dashed-IPv4", {}, "172-0-0-2.hdls.ns.svc.cluster.local.",
     "A", NOERROR, ["172-0-0-2.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.2"], []),
    ("CD-kubernetes.go-endpointHostname-dashed-IPv6", {},
     "5678-abcd--1.hdls.ns.svc.cluster.local.", "AAAA", NOERROR,
     ["5678-abcd--1.hdls.ns.svc.cluster.local. 5 IN AAAA 5678:abcd::1"], []),
    ("CD-README-endpoint_pod_names", {"endpoint_pod_names": True},
     "web-7.hdls.ns.svc.cluster.local.", "A", NOERROR,
     ["web-7.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.7"], []),
    ("SPEC-2.4.1-not-ready-endpoint-has-no-name", {}, "notready.hdls.ns.svc.cluster.local.",
     "A", NXDOMAIN, [], []),
    ("SPEC-2.4-publishNotReadyAddresses", {}, "pnr.ns.svc.cluster.local.", "A", NOERROR,
     ["pnr.ns.svc.cluster.local. 5 IN A 172.0.1.1"], []),
    ("SPEC-2.4.2-SRV-per-endpoint-weight-floor-100/n", {},
     "_http._tcp.hdls.ns.svc.cluster.local.", "SRV", NOERROR,
     [f"_http._tcp.hdls.ns.svc.cluster.local. 5 IN SRV 0 16 80 {h}.hdls.ns.svc.cluster.local."
      for h in ("172-0-0-2", "172-0-0-3", "dup", "172-0-0-7", "5678-abcd--1")],
     ["172-0-0-2.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.2",
      "172-0-0-3.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.3",
      "dup.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.4",
      "dup.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.5",
      "172-0-0-7.hdls.ns.svc.cluster.local. 5 IN A 172.0.0.7",
      "5678-abcd--1.hdls.ns.svc.cluster.local. 5 IN AAAA 5678:abcd::1"]),
    ("SPEC-2.4.3-PTR-endpoint-hostname", {}, "4.0.0.172.in-addr.arpa.", "PTR", NOERROR,
     ["4.0.0.172.in-addr.arpa. 5 IN PTR dup.hdls.ns.svc.cluster.local."], []),
    ("CD-reverse.go-non-PTR-on-reverse-name-NXDOMAIN", {}, "4.0.0.172.in-addr.arpa.", "A",
     NXDOMAIN, [], []),
    ("CD-README-noendpoints-headless-NXDOMAIN", {"noendpoints": True},
     "hdls.ns.svc.cluster.local.", "A", NXDOMAIN, [], []),
    ("SPEC-2.5-ExternalName-CNAME", {}, "ext.ns.svc.cluster.local.", "CNAME", NOERROR,
     ["ext.ns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."], []),
    ("SPEC-2.5-ExternalName-A-gives-CNAME", {}, "ext.ns.svc.cluster.local.", "A", NOERROR,
     ["ext.ns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."], []),
    ("CD-handler_test-ExternalName-to-internal-service-chased", {},
     "ext-in.ns.svc.cluster.local.", "A", NOERROR,
     ["ext-in.ns.svc.cluster.local. 5 IN CNAME svc1.ns.svc.cluster.local.",
      "svc1.ns.svc.cluster.local. 5 IN A 10.0.0.1"], []),
    ("CD-kubernetes.go-ExternalName-IP-is-NXDOMAIN", {}, "ext-ip.ns.svc.cluster.local.", "A",
     NXDOMAIN, [], []),
    ("CD-handler_test-subdomain-of-external-NXDOMAIN", {},
     "endpoint.ext.ns.svc.cluster.local.", "CNAME", NXDOMAIN, [], []),
    ("SPEC-2.2-dns-version-TXT", {}, "dns-version.cluster.local.", "TXT", NOERROR,
     ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'], []),
    ("CD-backend_lookup.go-SOA-at-apex", {}, Z, "SOA", NOERROR, [SOA5], []),
    ("CD-ns.go-NS-at-apex-ns.dns", {}, Z, "NS", NOERROR,
     ["cluster.local. 5 IN NS ns.dns.cluster.local."], ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]),
    ("CD-handler_test-svc.zone-is-NODATA", {}, "svc.cluster.local.", "A", NOERROR, [], []),
    ("CD-handler_test-namespace-is-NODATA", {}, "ns.svc.cluster.local.", "A", NOERROR, [], []),
    ("CD-handler_test-missing-namespace-NXDOMAIN", {}, "svc0.nons.svc.cluster.local.", "A",
     NXDOMAIN, [], []),
    ("CD-namespace.go-service-in-unlisted-namespace-NXDOMAIN", {},
     "hidden.nons.svc.cluster.local.", "A", NXDOMAIN, [], []),
    ("CD-handler_test-TXT-on-existing-service-NODATA", {}, "svc1.ns.svc.cluster.local.", "TXT",
     NOERROR, [], []),
    ("CD-README-namespaces-filter", {"namespaces": ("other",)}, "svc1.ns.svc.cluster.local.",
     "A", NXDOMAIN, [], []),
    ("CD-README-labels-filter", {"labels": "app=x"}, "svc1.ns.svc.cluster.local.", "A",
     NXDOMAIN, [], []),
    ("CD-README-labels-filter-keeps-match", {"labels": "app in (x, y)"},
     "lbl.other.svc.cluster.local.", "A", NOERROR,
     ["lbl.other.svc.cluster.local. 5 IN A 10.0.0.10"], []),
    ("CD-README-ttl", {"ttl": 30}, "svc1.ns.svc.cluster.local.", "A", NOERROR,
     ["svc1.ns.svc.cluster.local. 30 IN A 10.0.0.1"], []),
    ("brief-ENT-_tcp-is-NODATA", {}, "_tcp.svc1.ns.svc.cluster.local.", "A", NOERROR, [], []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule(case):
    _, kw, qname, qtype, rcode, answer, additional = case
    import dns.rdatatype
    qt = dns.rdatatype.from_text(qtype)
    c = compiler(**kw)
    msg = to_message(qname, qt, c.lookup(qname, qt))
    assert msg.rcode() == rcode
    assert section(msg.answer) == rrsets(answer)
    assert section(msg.additional) == rrsets(additional)
    if not answer and kw.get("ttl") is None:
        # negative answers: the zone's SOA with minimum = ttl (CD backend_lookup.go SOA())
        assert section(msg.authority) == rrsets([SOA5]) or qname.endswith("arpa.")


POD_CASES = [
    ("CD-README-pods-disabled-NXDOMAIN", "disabled", "10-244-0-7.ns.pod.cluster.local.", NXDOMAIN,
     []),
    ("CD-README-pods-insecure-any-IP", "insecure", "1-2-3-4.ns.pod.cluster.local.", NOERROR,
     ["1-2-3-4.ns.pod.cluster.local. 5 IN A 1.2.3.4"]),
    ("CD-README-pods-verified-existing-pod", "verified", "10-244-0-7.ns.pod.cluster.local.",
     NOERROR, ["10-244-0-7.ns.pod.cluster.local. 5 IN A 10.244.0.7"]),
    ("CD-README-pods-verified-unknown-IP-NXDOMAIN", "verified", "1-2-3-4.ns.pod.cluster.local.",
     NXDOMAIN, []),
    ("CD-README-pods-verified-wrong-namespace-NXDOMAIN", "verified",
     "10-244-0-7.other.pod.cluster.local.", NXDOMAIN, []),
    ("CD-kubernetes.go-pods-insecure-bad-IP-NXDOMAIN", "insecure", "1-2-3.ns.pod.cluster.local.",
     NXDOMAIN, []),
]


@pytest.mark.parametrize("case", POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_rule(case):
    _, mode, qname, rcode, answer = case
    c = compiler(pods=mode)
    ans = pod_answer(qname, 1, c.conf, c.index, serial=1)
    msg = to_message(qname, 1, ans)
    assert msg.rcode() == rcode
    assert section(msg.answer) == rrsets(answer)
    if mode == "verified":  # the compiler holds verified pod names itself; both must agree
        assert c.lookup(qname, 1) == ans
