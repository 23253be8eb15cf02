#!/usr/bin/env python3
"""One fastdns worker vs Unbound vs a trivial C responder, same run, same names.

Each server is pinned to core 0, the load (fastdns-bench, batching
sendmmsg/recvmmsg) to core 1.  Servers answer 1,000 cluster names
(`svc-N.bench.svc.cluster.local A`): fastdns from its compiled table (and,
with --cache, from the shared cache in front of a forwarder to a loopback C
responder, warmed by one pass over the names first), Unbound from
`local-data`, the C responder without looking anything up (the ceiling).
Rounds alternate the servers; the server's CPU use during each run is read
from /proc/PID/stat so a run whose server was not busy is visible.

    python benchmarks/bench_server.py [--rounds 3] [--duration 8] [--concurrency 256]
        [--workers2]    # also: fastdns with 2 workers, unpinned, same client
        [--tcp]         # every server over TCP (8 pipelined connections), plus
                        # fastdns over UDP in the same rounds for the TCP/UDP ratio
        [--corefiles kubeadm,aks,hosts,file,template [--baseline DIR]]
                        # real Corefiles (kubeadm's, AKS's, the names in hosts / a zone
                        # file); kubeadm-base: kubeadm's served by another checkout
        [--only KINDS]  # just these kinds (the responder always runs: the ceiling)

Loopback only.  Needs gcc, taskset, unbound.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_client_vs_dnsperf as bcd  # noqa: E402
from bench_client_vs_dnsperf import (cpu_seconds, free_port, start_responder,  # noqa: E402
                                     start_unbound, wait_udp)

SERVER_CPU, CLIENT_CPU = "0", "1"
N_NAMES = 1000


def names() -> list[str]:
    return [f"svc-{i}.bench.svc.cluster.local" for i in range(N_NAMES)]


def write_snapshot(path: Path) -> None:
    items = ['- {apiVersion: v1, kind: Namespace, metadata: {name: bench}}']
    for i in range(N_NAMES):
        ip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        items.append(f"- {{apiVersion: v1, kind: Service, metadata: {{name: svc-{i}, namespace: bench}}, "
                     f"spec: {{type: ClusterIP, clusterIP: {ip}, clusterIPs: [{ip}], "
                     f"ports: [{{name: http, port: 80, protocol: TCP}}]}}}}")
    path.write_text("apiVersion: v1\nkind: List\nitems:\n" + "\n".join(items) + "\n")


# Real Corefiles (issue 14): kubeadm's default; AKS's (kubeadm's + its two templates); the
# names in a hosts file; the names in a zone file.  Probe and metrics ports on loopback,
# the API as a snapshot, forward to a loopback responder (nothing here is forwarded).
KUBEADM = """.:{port} {{
    errors
    health 127.0.0.1:{p1} {{
       lameduck 1s
    }}
    ready 127.0.0.1:{p2}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       snapshot {snap}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:{p3}
    forward . 127.0.0.1:{up} {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success cluster.local
       disable denial cluster.local
    }}
    loop
    reload
    loadbalance
}}
"""
AKS_TEMPLATES = """    template ANY ANY internal.cloudapp.net {
        match "^(?:[^.]+\\.){4,}internal\\.cloudapp\\.net\\.$"
        rcode NXDOMAIN
        fallthrough
    }
    template ANY ANY reddog.microsoft.com {
        rcode NXDOMAIN
    }
"""
CORES = ("kubeadm", "kubeadm-base", "aks", "hosts", "file", "template")


def corefile(kind: str, tmp: Path, port: int, upstream: int) -> str:
    """The Corefile of a real-Corefile kind (all answer the benchmark's names)."""
    snap = tmp / "cluster.yaml"
    write_snapshot(snap)
    ports = {"port": port, "p1": free_port(), "p2": free_port(), "p3": free_port(),
             "snap": snap, "up": upstream}
    text = KUBEADM.format(**ports)
    if kind == "aks":
        text = text.replace("    loadbalance\n", "    loadbalance\n" + AKS_TEMPLATES)
    elif kind == "hosts":
        hosts = tmp / "hosts"
        hosts.write_text("".join(f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256} {n}\n"
                                 for i, n in enumerate(names())))
        text = text.replace("    kubernetes cluster.local",
                            f"    hosts {hosts} {{\n       fallthrough\n    }}\n    kubernetes cluster.local")
        text = text.replace(f"snapshot {snap}", f"snapshot {tmp / 'empty.yaml'}")
        (tmp / "empty.yaml").write_text("apiVersion: v1\nkind: List\nitems: []\n")
    elif kind == "file":
        zone = tmp / "bench.zone"
        zone.write_text("$ORIGIN bench.svc.cluster.local.\n$TTL 30\n"
                        "@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30\n"
                        "@ IN NS ns.dns.cluster.local.\n"
                        + "".join(f"svc-{i} IN A 10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}\n"
                                  for i in range(N_NAMES)))
        # kubernetes comes before file in CoreDNS's order and owns cluster.local: the
        # zone file takes its place so that file answers the names
        start = text.index("    kubernetes cluster.local")
        end = text.index("    }\n", start) + len("    }\n")
        text = text[:start] + f"    file {zone} bench.svc.cluster.local\n" + text[end:]
    elif kind == "template":
        # a static template rule answering the names, in kubernetes's place
        start = text.index("    kubernetes cluster.local")
        end = text.index("    }\n", start) + len("    }\n")
        text = text[:start] + ('    template IN A bench.svc.cluster.local {\n'
                               '        answer "{{ .Name }} 30 IN A 10.96.0.1"\n    }\n') + text[end:]
    return text


def start_fastdns(tmp: Path, port: int, workers: int, pin: bool,
                  upstream: int | None = None, kind: str = "fastdns",
                  baseline: Path | None = None) -> subprocess.Popen:
    """fastdns answering the names from its table, or (``upstream``: a port) from
    the shared cache in front of a forwarder to that loopback upstream; a real
    Corefile for the kinds in CORES (``kubeadm-base``: the same Corefile served by
    the checkout at ``baseline``, built in place)."""
    snap = tmp / "cluster.yaml"
    write_snapshot(snap)
    core = tmp / "Corefile"
    env = None
    if kind in CORES:
        core.write_text(corefile(kind, tmp, port, upstream or 9))
        if kind == "kubeadm-base":
            env = {**__import__("os").environ, "PYTHONPATH": str(baseline)}
    elif upstream is None:
        core.write_text(f". {{\n  bind 127.0.0.1\n  kubernetes cluster.local {{\n    snapshot {snap}\n  }}\n}}\n")
    else:
        core.write_text(f". {{\n  bind 127.0.0.1\n  cache 3600\n  forward . 127.0.0.1:{upstream}\n}}\n")
    cmd = [sys.executable, "-m", "fastdns", "serve", "--conf", str(core), "--port", str(port),
           "--workers", str(workers), "--log-level", "warning"]
    if pin:
        cmd = ["taskset", "-c", SERVER_CPU] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=str(baseline) if kind == "kubeadm-base" else None)
    wait_udp(port, 30)
    return p


def warm(port: int, qfile: Path) -> None:
    """Ask every name once so the cache holds them all."""
    subprocess.run(["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "run",
                    "--server", f"127.0.0.1:{port}", "--queries", str(qfile), "--duration", "1",
                    "--concurrency", "16", "--quiet"], check=True, stdout=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def load(port: int, qfile: Path, duration: int, concurrency: int, server_pids: list[int],
         tcp: bool = False) -> dict:
    out = Path(tempfile.mktemp(suffix=".json"))
    cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "run",
           "--server", f"127.0.0.1:{port}", "--queries", str(qfile), "--duration", str(duration),
           "--concurrency", str(concurrency), "--json", str(out), "--quiet"]
    if tcp:
        cmd += ["--tcp", "--connections", "8"]
    c0 = sum(cpu_seconds(p) for p in server_pids)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    busy = (sum(cpu_seconds(p) for p in server_pids) - c0) / (time.monotonic() - t0)
    res = json.loads(out.read_text())
    out.unlink()
    res["server_cpu"] = busy
    return res


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--workers2", action="store_true", help="also fastdns --workers 2, unpinned")
    ap.add_argument("--cache", action="store_true",
                    help="also fastdns answering from the shared cache (forward + cache)")
    ap.add_argument("--tcp", action="store_true",
                    help="load over TCP (8 connections); adds fastdns-udp for the TCP/UDP ratio")
    ap.add_argument("--corefiles", default="",
                    help="also fastdns (1 worker) with real Corefiles: comma-separated "
                         "kubeadm,aks,hosts,file,template (and kubeadm-base with --baseline)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a fastdns checkout built in place (python setup.py build_ext "
                         "--inplace): kubeadm-base serves kubeadm's Corefile with it")
    ap.add_argument("--only", default="",
                    help="comma-separated kinds to run instead of responder,unbound,fastdns")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    bcd.TCP = args.tcp                    # start_responder: `responder -t`; Unbound takes both
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-bench-"))
    qfile = tmp / "queries.txt"
    qfile.write_text("".join(f"{n} A\n" for n in names()))
    subprocess.run(["gcc", "-O2", "-o", str(tmp / "responder"), str(HERE / "responder.c")], check=True)
    kinds = (["responder", "unbound", "fastdns"] + (["fastdns-2w"] if args.workers2 else [])
             + (["fastdns-cache"] if args.cache else []) + (["fastdns-udp"] if args.tcp else []))
    if args.only:
        kinds = args.only.split(",")
    for k in (c for c in args.corefiles.split(",") if c):
        if k not in CORES or (k == "kubeadm-base" and args.baseline is None):
            raise SystemExit(f"--corefiles {k}: one of {', '.join(CORES)} (kubeadm-base needs --baseline)")
        kinds.append(k)
    if "responder" not in kinds:
        kinds.insert(0, "responder")
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    try:
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else list(reversed(kinds))
            for kind in order:
                port = free_port()
                if kind == "responder":
                    p = start_responder(tmp, port)
                    pids = [p.pid]
                elif kind == "unbound":
                    p = start_unbound(tmp, port, names(), zone="cluster.local.")
                    pids = [p.pid]
                elif kind == "fastdns-cache":
                    up_port = free_port()
                    upstream = start_responder(tmp, up_port)
                    p = start_fastdns(tmp, port, 1, pin=True, upstream=up_port)
                    warm(port, qfile)
                    time.sleep(0.5)
                    pids = children(p.pid)
                elif kind in CORES:
                    up_port = free_port()
                    upstream = start_responder(tmp, up_port)
                    p = start_fastdns(tmp, port, 1, pin=True, upstream=up_port, kind=kind,
                                      baseline=args.baseline)
                    time.sleep(1.0)
                    pids = children(p.pid)
                else:
                    p = start_fastdns(tmp, port, 2 if kind == "fastdns-2w" else 1,
                                      pin=kind in ("fastdns", "fastdns-udp"))
                    time.sleep(0.5)
                    pids = children(p.pid)
                try:
                    res = load(port, qfile, args.duration, args.concurrency, pids,
                               tcp=args.tcp and kind != "fastdns-udp")
                finally:
                    stop(p)
                    if kind == "fastdns-cache" or kind in CORES:
                        stop(upstream)
                results[kind].append(res)
                print(f"round {r + 1} {kind:11s} qps {res['qps']:>10.0f}  lost {res['lost']:>6}  "
                      f"p99 {res['latency_us']['p99']:>7.0f}us  server cpu {res['server_cpu']:.2f}",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(x["qps"] for x in v) for k, v in results.items()}
    print()
    print(f"{'server':12s} {'median qps':>12s} {'vs unbound':>11s} {'vs responder':>13s} {'lost %':>8s}")
    ref = med.get("unbound")
    for k in kinds:
        sent = sum(x["sent"] for x in results[k])
        lost = sum(x["lost"] for x in results[k])
        vs_unbound = f"{med[k] / ref:11.2f}" if ref else f"{'-':>11s}"
        print(f"{k:12s} {med[k]:12.0f} {vs_unbound} "
              f"{med[k] / med['responder']:13.2f} {100 * lost / max(1, sent):8.3f}")
    for k in ("kubeadm-base", "aks", "hosts", "file", "template"):
        if k in med and "kubeadm" in med:
            print(f"{k} / kubeadm: {med[k] / med['kubeadm']:.3f}")
    if args.tcp:
        print(f"\nfastdns over TCP / the same worker over UDP: {med['fastdns'] / med['fastdns-udp']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"median_qps": med, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
