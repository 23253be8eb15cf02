"""Shared pieces of the end-to-end server tests: a cluster snapshot, its Corefile,
the reference answers (the Kubernetes compiler run directly), comparisons."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import yaml

from fastdns.config import parse as parse_corefile
from fastdns.plugins.kubernetes.compile import ZoneCompiler
from fastdns.plugins.kubernetes.podnames import pod_answer
from fastdns.plugins.kubernetes.source import SnapshotSource
from tests.k8s_support import (
    endpoint,
    namespace,
    pod,
    section,
    service,
    slice_,
    to_message,
)

BIG = 100  # endpoints of the headless service "big": its A answer needs TCP


def cluster_objects(api_ip: str = "10.96.1.10") -> list[dict]:
    """Every record kind of the Kubernetes issue, plus a large headless service."""
    big_eps = [endpoint(f"10.245.{i // 200}.{i % 200 + 1}") for i in range(BIG)]
    return [
        namespace("default"), namespace("prod"),
        # ClusterIP, dual-stack, named ports
        service("api", "prod", [api_ip, "fd00:96::10"], [("http", 80, "TCP"), ("dns", 53, "UDP")]),
        slice_("api-v4", "api", [endpoint("10.244.1.5", pod="api-1"),
                                 endpoint("10.244.2.6", pod="api-2")], "prod",
               [("http", 8080, "TCP"), ("dns", 5353, "UDP")]),
        slice_("api-v6", "api", [endpoint("fd00:244::5")], "prod",
               [("http", 8080, "TCP"), ("dns", 5353, "UDP")], family="IPv6"),
        # headless with hostnames (one without, one not ready)
        service("db", "prod", headless=True, ports=[("pg", 5432, "TCP")]),
        slice_("db-a", "db", [endpoint("10.244.3.1", hostname="db-0"),
                              endpoint("10.244.3.2", hostname="db-1"),
                              endpoint("10.244.3.3"),
                              endpoint("10.244.3.4", ready=False, hostname="db-3")], "prod",
               [("pg", 5432, "TCP")]),
        # ExternalName
        service("ext", "prod", external="ext.example.com"),
        # large headless
        service("big", "default", headless=True, ports=[("http", 80, "TCP")]),
        slice_("big-a", "big", big_eps, "default", [("http", 80, "TCP")]),
        pod("api-1", "10.244.1.5", "prod"),
    ]


def write_snapshot(path: Path, objects: list[dict]) -> None:
    """As ``kubectl get ... -o yaml`` prints a List."""
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}))


def write_snapshot_atomic(path: Path, objects: list[dict]) -> None:
    """Write beside, then rename over (what ConfigMap updates and editors do)."""
    tmp = path.with_suffix(".tmp")
    write_snapshot(tmp, objects)
    os.rename(tmp, path)


def corefile(snapshot: str = "cluster.yaml", extra: str = "") -> str:
    return f""". {{
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        snapshot {snapshot}
        pods insecure
        ttl 30
    }}
    {extra}
}}
"""


def make_cluster_dir(tmp: Path, objects: list[dict] | None = None, extra: str = "") -> Path:
    """A Corefile + cluster.yaml in ``tmp``; returns the Corefile path."""
    write_snapshot(tmp / "cluster.yaml", cluster_objects() if objects is None else objects)
    conf = tmp / "Corefile"
    conf.write_text(corefile(extra=extra))
    return conf


class Reference:
    """The answers the Kubernetes compiler gives for a Corefile's first kubernetes block."""

    def __init__(self, corefile_path: Path) -> None:
        plan = parse_corefile(corefile_path.read_text(), filename=str(corefile_path))
        conf = plan.servers[0].plugin("kubernetes")
        ns_addresses = tuple(sorted({li.address for li in plan.listeners if li.address}))
        self.conf = conf
        self.compiler = ZoneCompiler(conf, ns_addresses=ns_addresses, serial=0)
        self.index = SnapshotSource(conf.snapshot).load()
        self.compiler.full(self.index)

    def message(self, qname: str, qtype: str) -> dns.message.Message:
        """The expected response (as dnspython parses it)."""
        t = dns.rdatatype.from_text(qtype)
        ans = pod_answer(qname, t, self.conf, self.index, serial=0)
        if ans is None:
            ans = self.compiler.lookup(qname, t)
        assert ans is not None, f"{qname} is outside the reference's zones"
        return to_message(qname, t, ans)


def _no_serial(rows: set[tuple[str, int, int, str]]) -> set[tuple[str, int, int, str]]:
    """SOA serials differ between two compilations (the time); compare the rest."""
    out = set()
    for name, ttl, rdtype, text in rows:
        if rdtype == dns.rdatatype.SOA:
            f = text.split()
            f[2] = "0"
            text = " ".join(f)
        out.add((name, ttl, rdtype, text))
    return out


def sections(msg: dns.message.Message) -> dict[str, Any]:
    """What must match between the server's response and the reference."""
    return {"rcode": msg.rcode(),
            "aa": bool(msg.flags & dns.flags.AA),
            "answer": _no_serial(section(msg.answer)),
            "authority": _no_serial(section(msg.authority)),
            "additional": _no_serial(section(msg.additional))}

