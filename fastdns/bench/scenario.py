"""The ``k8s-pod`` scenario: lookups as pods' glibc resolvers make them.

A pod's ``/etc/resolv.conf`` in a cluster reads::

    search <ns>.svc.cluster.local svc.cluster.local cluster.local
    options ndots:5

and glibc's ``getaddrinfo`` (AF_UNSPEC) runs ``res_search`` over it, asking A
and AAAA in parallel over one socket for each candidate name.  The candidate
order is glibc's (resolv/res_query.c, ``__res_context_search``):

* a trailing dot: the name as is, only;
* at least ``ndots`` dots: the name as is first, then each search suffix;
* fewer dots: each search suffix, then the name as is;

stopping at the first positive answer (NOERROR with answers in the A or the
AAAA reply).  NXDOMAIN, NODATA and SERVFAIL go on to the next suffix; any
other rcode (REFUSED, FORMERR, NOTIMP) ends the suffix walk, but the as-is
query is still made if it has not been tried yet.  Not modelled: glibc's
retries (a timeout ends the lookup as *lost*) and its re-sends after SERVFAIL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fastdns.bench.queries import Workload
from fastdns.errors import BenchError

DEFAULT_EXTERNAL = ("www.example.com", "api.example.org", "registry.example.net",
                    "storage.example.com", "login.example.org")

# (form, weight): how often each way of naming a target occurs in the mix
MIX = (("short", 35), ("svc.ns", 25), ("svc.ns.svc", 5), ("long", 10), ("fqdn", 5),
       ("pod-hostname", 5), ("external", 15))


@dataclass
class Service:
    """A Service as the scenario needs it."""

    name: str
    namespace: str
    kind: str                       # ClusterIP, Headless, ExternalName
    hostnames: list[str] = field(default_factory=list)


@dataclass
class Cluster:
    """Services and namespaces read from a snapshot file."""

    services: list[Service]
    namespaces: list[str]


def _items(docs: list, path: str) -> list[dict]:
    out: list[dict] = []
    for d in docs:
        if d is None:
            continue
        if not isinstance(d, dict):
            raise BenchError(f"{path}: expected Kubernetes objects, got {type(d).__name__}")
        if d.get("kind") == "List" or (d.get("kind", "").endswith("List") and "items" in d):
            items = d.get("items")
            if not isinstance(items, list):
                raise BenchError(f"{path}: {d.get('kind')} without an items list")
            out.extend(items)
        else:
            out.append(d)
    return out


def read_cluster(path: str | Path) -> Cluster:
    """Read a snapshot (a ``List``, or a multi-document stream, YAML or JSON)."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except OSError as e:
        raise BenchError(f"{path}: cannot read cluster file: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise BenchError(f"{path}{where}: not valid YAML/JSON: {getattr(e, 'problem', e)}") from None
    services: dict[tuple[str, str], Service] = {}
    slices: list[tuple[int, dict]] = []
    namespaces: set[str] = set()
    for i, obj in enumerate(_items(docs, path)):
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise BenchError(f"{path}: item {i}: not a Kubernetes object (no metadata)")
        kind, meta = obj.get("kind"), obj["metadata"]
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise BenchError(f"{path}: item {i} ({kind}): metadata.name missing")
        ns = meta.get("namespace") or "default"
        if kind == "Namespace":
            namespaces.add(name)
        elif kind == "Service":
            spec = obj.get("spec") or {}
            if not isinstance(spec, dict):
                raise BenchError(f"{path}: item {i} (Service {ns}/{name}): spec is not a mapping")
            if spec.get("type") == "ExternalName":
                k = "ExternalName"
            elif spec.get("clusterIP") == "None":
                k = "Headless"
            else:
                k = "ClusterIP"
            services[(ns, name)] = Service(name, ns, k)
            namespaces.add(ns)
        elif kind == "EndpointSlice":
            slices.append((i, obj))
    for i, sl in slices:
        meta = sl["metadata"]
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not isinstance(owner, str):
            continue
        svc = services.get((meta.get("namespace") or "default", owner))
        eps = sl.get("endpoints") or []
        if not isinstance(eps, list):
            raise BenchError(f"{path}: item {i} (EndpointSlice {meta['name']}): endpoints is not a list")
        if svc is None or svc.kind != "Headless":
            continue
        for ep in eps:
            if isinstance(ep, dict) and isinstance(ep.get("hostname"), str):
                svc.hostnames.append(ep["hostname"])
    if not services:
        raise BenchError(f"{path}: no Services in the cluster file")
    return Cluster(sorted(services.values(), key=lambda s: (s.namespace, s.name)), sorted(namespaces))


def search_list(pod_namespace: str, domain: str = "cluster.local") -> list[str]:
    """A pod's search list, as the kubelet writes it (ClusterFirst policy)."""
    return [f"{pod_namespace}.svc.{domain}", f"svc.{domain}", domain]


def glibc_candidates(name: str, search: list[str], ndots: int = 5) -> tuple[list[str], list[int]]:
    """The names ``res_search`` tries for ``name``, absolute, in order, and for
    each the index to go to when a reply ends the suffix walk (-1 = stop)."""
    if name.endswith("."):
        return [name], [-1]
    dots = name.count(".")
    suffixed = [f"{name}.{d.rstrip('.')}." if d.strip(".") else f"{name}." for d in search]
    if dots >= ndots:
        names = [f"{name}."] + suffixed
        # after the as-is try glibc walks the suffixes whatever the reply was
        done = [1 if len(names) > 1 else -1] + [-1] * len(suffixed)
        return names, done
    names = suffixed + [f"{name}."]
    asis = len(names) - 1
    return names, [asis] * len(suffixed) + [-1]


def add_lookup(w: Workload, name: str, search: list[str], ndots: int = 5,
               qtypes: tuple[str, ...] = ("A", "AAAA")) -> int:
    """Append one lookup of ``name`` to ``w``; returns its first candidate."""
    names, done = glibc_candidates(name, search, ndots)
    base = len(w.cand_fail)
    for k, n in enumerate(names):
        pkts = [w.packet(n, t) for t in qtypes]
        w.candidate(pkts[0], pkts[1] if len(pkts) > 1 else -1,
                    fail=base + k + 1 if k + 1 < len(names) else -1,
                    done=base + done[k] if done[k] >= 0 else -1)
    w.item_first.append(base)
    w.lookups = True
    return base


def k8s_pod_names(cluster: Cluster, count: int = 10000, seed: int = 1,
                  domain: str = "cluster.local",
                  external: tuple[str, ...] = DEFAULT_EXTERNAL) -> list[tuple[str, str]]:
    """``count`` (pod namespace, name as the application writes it) pairs in the mix ``MIX``."""
    rng = random.Random(seed)
    forms, weights = zip(*MIX)
    headless = [s for s in cluster.services if s.hostnames]
    out = []
    for _ in range(count):
        svc = rng.choice(cluster.services)
        form = rng.choices(forms, weights)[0]
        pod_ns = rng.choice(cluster.namespaces) if cluster.namespaces else svc.namespace
        if form == "short":
            pod_ns, name = svc.namespace, svc.name
        elif form == "svc.ns":
            name = f"{svc.name}.{svc.namespace}"
        elif form == "svc.ns.svc":
            name = f"{svc.name}.{svc.namespace}.svc"
        elif form == "long":
            name = f"{svc.name}.{svc.namespace}.svc.{domain}"
        elif form == "fqdn":
            name = f"{svc.name}.{svc.namespace}.svc.{domain}."
        elif form == "pod-hostname" and headless:
            h = rng.choice(headless)
            pod_ns, name = h.namespace, f"{rng.choice(h.hostnames)}.{h.name}"
        else:
            name = rng.choice(external)
        out.append((pod_ns, name))
    return out


def k8s_pod_workload(cluster: Cluster, count: int = 10000, seed: int = 1, ndots: int = 5,
                     domain: str = "cluster.local", qtypes: tuple[str, ...] = ("A", "AAAA"),
                     edns: bool = False) -> Workload:
    """The ``k8s-pod`` scenario's lookups as engine work."""
    w = Workload(edns=edns)
    for pod_ns, name in k8s_pod_names(cluster, count, seed, domain):
        add_lookup(w, name, search_list(pod_ns, domain), ndots, qtypes)
    return w


def read_scenario(name: str, cluster_file: str | None, **kw) -> Workload:
    """Build the workload of scenario ``name`` (only ``k8s-pod`` for now)."""
    if name != "k8s-pod":
        raise BenchError(f"unknown scenario {name!r} (known: k8s-pod)")
    if not cluster_file:
        raise BenchError("scenario k8s-pod needs --cluster FILE (a cluster snapshot)")
    if not Path(cluster_file).exists():
        raise BenchError(f"{cluster_file}: no such cluster file")
    return k8s_pod_workload(read_cluster(cluster_file), **kw)
