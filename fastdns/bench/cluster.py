"""Synthetic cluster snapshots: a Kubernetes ``List`` as ``kubectl get -o yaml`` prints it.

``generate_cluster(ClusterSpec(...))`` returns the List object (Namespaces,
Services — ClusterIP, headless, a few ExternalName — and discovery.k8s.io/v1
EndpointSlices of at most 100 endpoints each) and a matching dnsperf query
list.  Deterministic for a given spec.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from fastdns.bench.queries import Query
from fastdns.errors import BenchError

SLICE_MAX = 100          # the EndpointSlice controller's default maxEndpointsPerSlice
EXTERNAL_EVERY = 50      # every 50th service is an ExternalName
CREATED = "2024-01-01T00:00:00Z"
NODES = 8


@dataclass(frozen=True)
class ClusterSpec:
    """What to generate."""

    services: int
    endpoints_per_service: int
    headless_fraction: float = 0.1
    namespaces: int = 4
    domain: str = "cluster.local"

    def validate(self) -> None:
        """BenchError on impossible sizes."""
        if self.services < 1 or self.services > 1_000_000:
            raise BenchError("--services must be 1-1000000")
        if self.endpoints_per_service < 0 or self.endpoints_per_service > 10_000:
            raise BenchError("--endpoints-per-service must be 0-10000")
        if not 0.0 <= self.headless_fraction <= 1.0:
            raise BenchError("--headless-fraction must be between 0 and 1")
        if self.namespaces < 1 or self.namespaces > 10_000:
            raise BenchError("--namespaces must be 1-10000")
        if self.services * self.endpoints_per_service > 16_000_000:
            raise BenchError("too many endpoints (services × endpoints-per-service > 16M)")


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "fastdns-bench/" + "/".join(parts)))


def _suffix(*parts: str) -> str:
    h = hashlib.sha1("/".join(parts).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(h[i:i + 2], 16) % len(alphabet)] for i in range(0, 10, 2))


def _ip(base: tuple[int, int], n: int) -> str:
    n += 10
    return f"{base[0]}.{base[1] + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


def _meta(name: str, ns: str | None, rv: int, labels: dict | None = None) -> dict:
    m: dict = {"creationTimestamp": CREATED, "name": name}
    if labels:
        m["labels"] = labels
    if ns is not None:
        m["namespace"] = ns
    m["resourceVersion"] = str(rv)
    m["uid"] = _uid(ns or "", name)
    return m


def _is_headless(i: int, f: float) -> bool:
    return int((i + 1) * f) > int(i * f)


def generate_cluster(spec: ClusterSpec) -> tuple[dict, list[Query]]:
    """The List object and the matching queries (absolute names)."""
    spec.validate()
    items: list[dict] = []
    queries: list[Query] = []
    rv = 1000
    nss = [f"ns-{k}" for k in range(spec.namespaces)]
    for ns in nss:
        rv += 1
        items.append({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": _meta(ns, None, rv, {"kubernetes.io/metadata.name": ns}),
                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    pod_n = n_headless = 0
    for i in range(spec.services):
        ns = nss[i % len(nss)]
        name = f"svc-{i}"
        fq = f"{name}.{ns}.svc.{spec.domain}"
        rv += 1
        ports = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
        if i % EXTERNAL_EVERY == EXTERNAL_EVERY - 1:
            items.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns, rv),
                          "spec": {"externalName": f"{name}.example.com", "sessionAffinity": "None",
                                   "type": "ExternalName"},
                          "status": {"loadBalancer": {}}})
            queries.append(Query(fq, "A"))
            continue
        headless = _is_headless(i, spec.headless_fraction)
        svc_spec: dict = {
            "clusterIP": "None" if headless else _ip((10, 96), i),
            "clusterIPs": ["None" if headless else _ip((10, 96), i)],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": ports,
            "selector": {"app": name},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        }
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": _meta(name, ns, rv, {"app": name}),
                      "spec": svc_spec, "status": {"loadBalancer": {}}})
        queries.append(Query(fq, "A"))
        if i % 4 == 1:
            queries.append(Query(f"_http._tcp.{fq}", "SRV"))
        if i % 4 == 3:
            queries.append(Query(fq, "AAAA"))
        # every other headless service is StatefulSet-like: pods with hostnames
        with_hostnames = headless and n_headless % 2 == 0
        n_headless += headless
        eps = []
        for e in range(spec.endpoints_per_service):
            pod = f"{name}-{e}" if with_hostnames else f"{name}-{_suffix(name, 'rs')}-{_suffix(name, str(e))}"
            ep: dict = {
                "addresses": [_ip((10, 244), pod_n)],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": f"node-{pod_n % NODES}",
                "targetRef": {"kind": "Pod", "name": pod, "namespace": ns, "uid": _uid(ns, pod)},
            }
            if with_hostnames:
                ep["hostname"] = pod
                if e == 0:
                    queries.append(Query(f"{pod}.{fq}", "A"))
            eps.append(ep)
            pod_n += 1
        for k in range(0, max(len(eps), 1), SLICE_MAX):
            rv += 1
            sl_name = f"{name}-{_suffix(name, 'slice', str(k))}"
            labels = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                      "kubernetes.io/service-name": name}
            if headless:
                labels["service.kubernetes.io/headless"] = ""
            meta = _meta(sl_name, ns, rv, labels)
            meta["generateName"] = f"{name}-"
            meta["ownerReferences"] = [{"apiVersion": "v1", "blockOwnerDeletion": True,
                                        "controller": True, "kind": "Service", "name": name,
                                        "uid": _uid(ns, name)}]
            items.append({"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1",
                          "endpoints": eps[k:k + SLICE_MAX] or None, "kind": "EndpointSlice",
                          "metadata": meta,
                          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
            if items[-1]["endpoints"] is None:
                del items[-1]["endpoints"]
    return {"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}}, queries


def write_cluster(obj: dict, path: str | Path) -> None:
    """YAML (sorted keys, as kubectl) or JSON when ``path`` ends in .json."""
    p = Path(path)
    try:
        if p.suffix == ".json":
            p.write_text(json.dumps(obj, indent=4) + "\n", encoding="utf-8")
        else:
            with p.open("w", encoding="utf-8") as f:
                yaml.dump(obj, f, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                          sort_keys=True, default_flow_style=False)
    except OSError as e:
        raise BenchError(f"{path}: cannot write: {e}") from None


def write_queries(queries: list[Query], path: str | Path) -> None:
    """A dnsperf query file."""
    try:
        Path(path).write_text("".join(f"{q.name} {q.qtype}\n" for q in queries), encoding="utf-8")
    except OSError as e:
        raise BenchError(f"{path}: cannot write: {e}") from None
