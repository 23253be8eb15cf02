"""The Kubernetes → workers pipeline end to end: a JSON snapshot file, a real
`fastdns serve --workers 2`, answers from every worker, one EndpointSlice change
reaching every worker; and the compiled state's size per name."""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

import pytest

import dns.message
import dns.rdatatype

from fastdns.plugins.kubernetes.compile import ZoneCompiler
from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.compiled import NODATA_REF, entry_body
from fastdns.plugins.kubernetes.index import MODIFIED, ClusterIndex, Event
from fastdns.plugins.kubernetes.objects import decode_object

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_pipeline  # noqa: E402
from bench_index import generate_raw  # noqa: E402

ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")


@pytest.mark.parametrize("source, corefile", [("api", "kubeadm"), ("snapshot", "minimal")])
def test_serve_answers_on_every_worker_and_follows_a_change(source, corefile):
    """200 services / 1000 endpoints through `fastdns serve --workers 2`, from the
    list/watch API (kubeadm's Corefile) or a snapshot file: every one of 32 source
    ports answers, and each of two new endpoint addresses reaches all of them (the
    run stops with SystemExit if one does not within 10 s; how fast it does is a
    benchmark figure: benchmarks/RESULTS.md, bench_pipeline.py)."""
    args = argparse.Namespace(source=source, corefile=corefile, services=200, endpoints=1000,
                              workers=2, port=0, probes=32, changes=2, settle=0.2,
                              timeout=60.0, json=True)
    r = bench_pipeline.run(args)
    assert len(r["change_s"]) == 2, r
    assert len(r["worker_rss_mb"]) == 2, r


def test_negative_answers_from_shared_bodies(tmp_path):
    """Names whose other types are answered from the zone's shared NODATA body still
    give NODATA with the SOA (not NXDOMAIN); absent names give NXDOMAIN."""
    raw = generate_raw(20, 100)
    snap = tmp_path / "c.json"
    bench_pipeline.write_atomic(snap, bench_pipeline.cluster_json(raw))
    port = bench_pipeline.free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(f". {{\n bind 127.0.0.1\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n"
                    f"  snapshot {snap}\n }}\n}}\n")
    import subprocess
    proc = subprocess.Popen([sys.executable, "-m", "fastdns", "serve", "--conf", str(conf),
                             "--workers", "1", "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prober = bench_pipeline.Prober(port, 1)
    try:
        name = "svc-0.ns-0.svc.cluster.local."
        assert bench_pipeline.wait_until(
            lambda: (lambda m: m is not None and m.rcode() == 0 and m.answer)(
                prober.ask(name, "A")[0]), 30, 0.05) is not None
        txt = prober.ask(name, "TXT")[0]
        assert txt is not None and txt.rcode() == 0 and not txt.answer
        soa = txt.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "cluster.local."
        nx = prober.ask("nope.ns-0.svc.cluster.local.", "A")[0]
        assert nx is not None and nx.rcode() == 3
        assert isinstance(txt, dns.message.Message)
    finally:
        prober.close()
        proc.terminate()
        proc.wait(15)


def compiled(n_services: int, n_endpoints: int) -> tuple[ZoneCompiler, ClusterIndex]:
    objs = [decode_object(k, r) for k, r in generate_raw(n_services, n_endpoints)]
    idx = ClusterIndex.from_objects(objs)
    comp = ZoneCompiler(KubernetesConf(zones=ZONES), serial=1)
    comp.full(idx)
    return comp, idx


def test_compiled_state_is_compact():
    """The compiler's whole state (store, unit and PTR bookkeeping) stays well under
    the old Answer-object state (~1.6 kB per name incl. the coordinator's copy)."""
    objs = [decode_object(k, r) for k, r in generate_raw(1000, 5000)]
    idx = ClusterIndex.from_objects(objs)
    del objs
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        comp = ZoneCompiler(KubernetesConf(zones=ZONES), serial=1)
        comp.full(idx)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    names = len(comp.entries)
    assert names > 10000
    assert used / names < 450, f"{used / names:.0f} bytes per name"
    # qtype 0 of a service name is the zone's shared NODATA, not a copy
    key = next(k for k in comp.entries if k.startswith(b"\x05svc-0"))
    assert entry_body(comp.entries[key], 99)[1] == NODATA_REF


def test_change_delta_carries_only_affected_encoded_names():
    """One EndpointSlice change: the Delta holds encoded entries of that service's
    names (and PTRs) only, and they decode to the new address."""
    comp, idx = compiled(100, 500)
    raw = next(r for k, r in generate_raw(100, 500) if k == "EndpointSlice"
               and r["metadata"]["labels"]["kubernetes.io/service-name"] == "svc-6")
    raw["endpoints"][0] = {**raw["endpoints"][0], "addresses": ["198.51.100.9"]}
    delta = comp.apply(Event(MODIFIED, decode_object("EndpointSlice", raw)))
    names = set(delta.upserts) | set(delta.deletes)
    assert names and all(n.endswith("svc-6.ns-6.svc.cluster.local.") or n.endswith(".arpa.")
                         for n in names), names
    assert "9.100.51.198.in-addr.arpa." in delta.upserts
    ans = comp.lookup("svc-6.ns-6.svc.cluster.local.", 1)
    assert "198.51.100.9" in {r.rdata for r in ans.answer}
