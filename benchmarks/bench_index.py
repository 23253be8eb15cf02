"""Benchmark the Kubernetes index compiler on a generated 10k-service / 50k-endpoint cluster.

    python benchmarks/bench_index.py [--services 10000] [--endpoints 50000] [--changes 200]

Mix: 60% ClusterIP (20% of them dual-stack), 30% headless, 10% ExternalName;
named ports (http/tcp, half also grpc/tcp, some dns/udp); endpoints spread over
the ClusterIP and headless services (one EndpointSlice each), some with
hostnames.  Objects are slimmed as the sources slim them (``Compactor``).
Prints one result line; goals: full <= 3 s, one change <= 5 ms (PASS/FAIL on
those).  The memory of the index and compiled state is reported here; the
goal on the whole coordinator process (< (pods + services)/1000 + 54 MB,
CoreDNS's rule of thumb) is measured by ``bench_pipeline.py``.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc

from fastdns.plugins.kubernetes.compile import ZoneCompiler
from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.plugins.kubernetes.index import ADDED, MODIFIED, ClusterIndex, Event
from fastdns.plugins.kubernetes.objects import Compactor, decode_object


def generate(n_services: int, n_endpoints: int) -> list:
    """Slim records of a synthetic cluster."""
    return [decode_object(kind, raw) for kind, raw in generate_raw(n_services, n_endpoints)]


def generate_raw(n_services: int, n_endpoints: int) -> list[tuple[str, dict]]:
    """Raw ``(kind, dict)`` objects of a synthetic cluster, as the API would send them."""
    objs = [("Namespace", {"metadata": {"name": f"ns-{i}"}}) for i in range(100)]
    with_eps = [i for i in range(n_services) if i % 10 != 9]  # ExternalName gets none
    per = n_endpoints // len(with_eps)
    extra = n_endpoints - per * len(with_eps)
    ep_ip = 0
    for i in range(n_services):
        ns = f"ns-{i % 100}"
        kind = i % 10
        ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
        if i % 2:
            ports.append({"name": "grpc", "port": 9090, "protocol": "TCP"})
        if i % 7 == 0:
            ports.append({"name": "dns", "port": 53, "protocol": "UDP"})
        meta = {"name": f"svc-{i}", "namespace": ns, "resourceVersion": "1"}
        if kind == 9:
            spec = {"type": "ExternalName", "externalName": f"db{i}.example.com"}
        elif kind >= 6:
            spec = {"clusterIP": "None", "clusterIPs": ["None"], "ports": ports}
        else:
            ip4 = f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
            ips = [ip4, f"fd00::{i:x}"] if kind == 0 else [ip4]
            spec = {"clusterIP": ip4, "clusterIPs": ips, "ports": ports}
        objs.append(("Service", {"metadata": meta, "spec": spec}))
        if kind == 9:
            continue
        count = per + (1 if extra > 0 else 0)
        extra -= 1
        eps = []
        for j in range(count):
            ep_ip += 1
            ep = {"addresses": [f"172.{16 + (ep_ip >> 16)}.{(ep_ip >> 8) & 255}.{ep_ip & 255}"],
                  "conditions": {"ready": j % 20 != 19},
                  "targetRef": {"kind": "Pod", "name": f"svc-{i}-pod-{j}", "namespace": ns}}
            if kind >= 6 and j % 2 == 0:
                ep["hostname"] = f"web-{j}"
            eps.append(ep)
        objs.append(("EndpointSlice", {
            "metadata": {"name": f"svc-{i}-abcde", "namespace": ns, "resourceVersion": "1",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "addressType": "IPv4", "ports": ports, "endpoints": eps}))
    return objs


def rss_mb() -> float:
    """Current RSS in MB (from /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=50000)
    ap.add_argument("--changes", type=int, default=200)
    a = ap.parse_args(argv)

    raw = generate_raw(a.services, a.endpoints)
    conf = KubernetesConf(zones=("cluster.local.", "in-addr.arpa.", "ip6.arpa."))
    gc.collect()
    # pass 1, untraced: time and RSS of decode + index + full compile
    rss0 = rss_mb()
    t0 = time.perf_counter()
    slim = Compactor.for_conf(conf)
    objs = [decode_object(kind, r, slim=slim) for kind, r in raw]
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = ClusterIndex.from_objects(objs)
    index_s = time.perf_counter() - t0
    comp = ZoneCompiler(conf, serial=1)
    t0 = time.perf_counter()
    answers = comp.full(index)
    full_untraced = time.perf_counter() - t0
    del objs
    gc.collect()
    rss1 = rss_mb()
    # pass 2, traced: Python heap held by the index + answers (the raw dicts excluded)
    tracemalloc.start()
    objs2 = [decode_object(kind, r, slim=slim) for kind, r in raw]
    index2 = ClusterIndex.from_objects(objs2)
    comp3 = ZoneCompiler(conf, serial=1)
    comp3.full(index2)
    del objs2
    gc.collect()
    traced_now, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index2, raw, comp3
    gc.collect()
    full_s = decode_s + index_s + full_untraced

    raw_slices = [r for kind, r in generate_raw(a.services, a.endpoints) if kind == "EndpointSlice"]
    times = []
    for k in range(a.changes):
        r = raw_slices[(k * 7919) % len(raw_slices)]
        eps = [dict(e) for e in r["endpoints"]]
        eps[0]["conditions"] = {"ready": not eps[0]["conditions"]["ready"]}
        r["endpoints"] = eps
        new = decode_object("EndpointSlice", r, slim=slim)
        t0 = time.perf_counter()
        delta = comp.apply(Event(MODIFIED, new))
        times.append(time.perf_counter() - t0)
        assert delta.upserts or delta.deletes
    change_ms = statistics.median(times) * 1000
    p99_ms = sorted(times)[int(len(times) * 0.99) - 1] * 1000
    # one Service added (cold unit)
    t0 = time.perf_counter()
    comp.apply(Event(ADDED, decode_object("Service", {
        "metadata": {"name": "new-svc", "namespace": "ns-1"},
        "spec": {"clusterIP": "10.200.0.1", "ports": [{"name": "http", "port": 80}]}})))
    add_ms = (time.perf_counter() - t0) * 1000

    ok = full_untraced <= 3 and change_ms <= 5
    print(f"bench_index services={a.services} endpoints={a.endpoints} names={len(answers)} "
          f"full_s={full_untraced:.2f} (decode {decode_s:.2f} + index {index_s:.2f} + compile = "
          f"{full_s:.2f}) change_ms_median={change_ms:.3f} "
          f"change_ms_p99={p99_ms:.3f} add_service_ms={add_ms:.3f} "
          f"tracemalloc_peak_mb={traced_peak / 2**20:.1f} tracemalloc_now_mb="
          f"{traced_now / 2**20:.1f} (Python heap; the compiled store is a C arena) "
          f"state_rss_mb={rss1 - rss0:.1f} {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
