"""Default Corefiles of distributions, as they ship, served by `fastdns serve`.

Only what a test on loopback must change is changed: the probe and metrics
ports (``127.0.0.1:<free>`` instead of all interfaces), the API (a
``snapshot`` file instead of in-cluster credentials) and ``/etc/resolv.conf``
(a file of our own naming a port-53 stub on a 127.0.0.0/8 address).  k3s's
(NodeHosts), OpenShift's and AKS's are tested with their plugins in
tests/test_plugin_hosts.py, tests/test_plugin_header.py and
tests/test_plugin_template.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from tests.server_support import cluster_objects, write_snapshot

MINIKUBE = """.:{port} {{
    log
    errors
    health 127.0.0.1:{health} {{
       lameduck 1s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       snapshot cluster.yaml
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    hosts {{
       192.168.49.1 host.minikube.internal
       fallthrough
    }}
    forward . {resolv} {{
       max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""

# kops's IPv6 Corefile without its dns64 line (with it: tests/test_dns64.py)
KOPS_IPV6 = """.:{port} {{
    errors
    health 127.0.0.1:{health} {{
      lameduck 1s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local. in-addr.arpa ip6.arpa {{
      snapshot cluster.yaml
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
      ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    forward . {resolv} {{
      max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[StubUpstream]:
    host = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    try:
        up = StubUpstream(host=host, port=53)
    except PermissionError:
        pytest.skip("binding port 53 needs CAP_NET_BIND_SERVICE")
    with up:
        yield up


def _serve(tmp: Path, template: str, up: StubUpstream) -> ServeProcess:
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    (tmp / "resolv.conf").write_text(f"nameserver {up.host}\noptions ndots:5\n")
    port = free_port()
    (tmp / "Corefile").write_text(template.format(
        port=port, health=free_port(), ready=free_port(), metrics=free_port(),
        resolv=tmp / "resolv.conf"))
    return ServeProcess(tmp / "Corefile", workers=2, port=port,
                        probe=("api.prod.svc.cluster.local.", "A"))


def ask(srv: ServeProcess, qname: str, qtype: str, tcp: bool) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype)
    if tcp:
        return dns.query.tcp(q, srv.host, port=srv.port, timeout=5)
    return dns.query.udp(q, srv.host, port=srv.port, timeout=5)


def data(r: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in r.answer for rd in rrset)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_minikube(tmp_path: Path, upstream: StubUpstream, tcp: bool) -> None:
    with _serve(tmp_path, MINIKUBE, upstream) as srv:
        assert data(ask(srv, "host.minikube.internal.", "A", tcp)) == ["192.168.49.1"]
        assert data(ask(srv, "api.prod.svc.cluster.local.", "A", tcp)) == ["10.96.1.10"]
        assert ask(srv, "nope.prod.svc.cluster.local.", "A", tcp).rcode() == dns.rcode.NXDOMAIN
        # hosts falls through to forward for the rest; the stub answers 192.0.2.1
        before = upstream.count("registry.example.")
        assert data(ask(srv, "registry.example.", "A", tcp)) == ["192.0.2.1"]
        assert upstream.count("registry.example.") == before + 1     # a fresh server each time
        assert data(ask(srv, "registry.example.", "A", tcp)) == ["192.0.2.1"]
        assert upstream.count("registry.example.") == before + 1     # then the cache's
        # reverse of the hosts entry: hosts answers it (kubernetes falls through)
        r = ask(srv, dns.reversename.from_address("192.168.49.1").to_text(), "PTR", tcp)
        assert data(r) == ["host.minikube.internal."]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_kops_ipv6_without_dns64(tmp_path: Path, upstream: StubUpstream, tcp: bool) -> None:
    with _serve(tmp_path, KOPS_IPV6, upstream) as srv:
        assert data(ask(srv, "api.prod.svc.cluster.local.", "AAAA", tcp)) == ["fd00:96::10"]
        assert data(ask(srv, "api.prod.svc.cluster.local.", "A", tcp)) == ["10.96.1.10"]
        r = ask(srv, dns.reversename.from_address("fd00:96::10").to_text(), "PTR", tcp)
        assert data(r) == ["api.prod.svc.cluster.local."]
        r = ask(srv, "fd00-244--5.prod.pod.cluster.local.", "AAAA", tcp)
        assert data(r) == ["fd00:244::5"]
        assert data(ask(srv, "www.example.", "AAAA", tcp)) == ["2001:db8::1"]
