#!/usr/bin/env python3
"""The node-local shape: a node-local cache in front of cluster DNS over TCP (issue 15).

Chain: load → node-local cache (pinned to core 0) → cluster DNS over TCP.  Cluster
DNS is fastdns (1 worker, the kubernetes plugin from a snapshot of 1,000 Services,
``pods insecure`` so every pod-IP name has an answer) and runs with the load on
core 1.  Two node-local caches are compared in the same run, alternating:

* ``fastdns``: the NodeLocalDNS addon's Corefile (deploy/node-local.yaml, its
  placeholders filled: ``cluster.local`` → ``forward . CLUSTER { force_tcp }``,
  ``cache { success 9984 30  denial 9984 5 }``, errors, reload, loop, prometheus,
  health), 1 worker;
* ``unbound``: one thread, a forward-zone for cluster.local to the same cluster DNS
  with ``forward-tcp-upstream: yes`` (what NodeLocalDNS alternatives built on Unbound
  set), its cache on.

Measured per node-local cache:

* ``unique``: closed loop, every query a pod name never asked before
  (``10-A-B-C.bench.pod.cluster.local``): every one is a miss forwarded over TCP;
* ``cached p99``: 1,000 warmed Service names at ``--probe-rate`` (open loop) alone,
  then the same while ``unique`` names run beside it at ``--miss-rate`` (open loop):
  the p99 of the cached names, alone and during the misses; and a control: the same
  miss load sent to cluster DNS directly (core 1 as busy, the node-local cache
  serving the probe only), which shows how much of the rise is the load's core.

    python benchmarks/bench_nodelocal.py [--rounds 3] [--duration 5] [--concurrency 256]
        [--probe-rate 5000] [--miss-rate 30000] [--json FILE]

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
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_client_vs_dnsperf import free_port, unbound_config, unbound_exe, wait_udp  # noqa: E402
from bench_forward import load, start_upstream  # noqa: E402
from bench_server import CLIENT_CPU, SERVER_CPU, children, names, stop, warm, write_snapshot  # noqa: E402

UNIQUE_LINES = 2_500_000    # more than a closed-loop run of --duration asks
REST_LINES = 400_000        # the misses beside the probe
GOAL = 1.5                  # x Unbound as the node-local cache (issue 15)
ADDON = HERE.parent / "deploy" / "node-local.yaml"


def addon_corefile(port: int, cluster: int, upstream: int, metrics: int, health: int) -> str:
    """The addon's Corefile from deploy/node-local.yaml with its placeholders filled for
    loopback (bind 127.0.0.1, cluster DNS and upstream on loopback ports)."""
    text = ADDON.read_text()
    start = text.index("  Corefile: |\n") + len("  Corefile: |\n")
    end = text.index("\n---", start)
    core = "\n".join(line[4:] for line in text[start:end].splitlines()) + "\n"
    return (core.replace("__PILLAR__DNS__DOMAIN__", "cluster.local")
            .replace(":53 {", f":{port} {{")
            .replace("bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__", "bind 127.0.0.1")
            .replace("__PILLAR__CLUSTER__DNS__", f"127.0.0.1:{cluster}")
            .replace("__PILLAR__UPSTREAM__SERVERS__", f"127.0.0.1:{upstream}")
            .replace("prometheus :9253", f"prometheus 127.0.0.1:{metrics}")
            .replace("health __PILLAR__LOCAL__DNS__:8080", f"health 127.0.0.1:{health}"))


def fastdns(conf: Path, text: str, port: int, cpu: str) -> tuple[subprocess.Popen, list[int]]:
    conf.write_text(text)
    p = subprocess.Popen(["taskset", "-c", cpu, sys.executable, "-m", "fastdns", "serve",
                          "--conf", str(conf), "--port", str(port), "--workers", "1",
                          "--log-level", "warning"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_udp(port, 30)
    time.sleep(0.3)
    return p, children(p.pid)


def start_cluster(tmp: Path, port: int) -> tuple[subprocess.Popen, list[int]]:
    snap = tmp / "snapshot.yaml"
    write_snapshot(snap)
    return fastdns(tmp / "Corefile.cluster",
                   f"cluster.local:{port} {{\n  bind 127.0.0.1\n  kubernetes cluster.local {{\n"
                   f"    snapshot {snap}\n    pods insecure\n  }}\n}}\n", port, CLIENT_CPU)


def start_nodelocal(kind: str, tmp: Path, port: int, cluster: int,
                    upstream: int) -> tuple[subprocess.Popen, list[int]]:
    if kind == "fastdns":
        return fastdns(tmp / "Corefile.nodelocal",
                       addon_corefile(port, cluster, upstream, free_port(), free_port()),
                       port, SERVER_CPU)
    conf = unbound_config(tmp, port, f"""    do-not-query-localhost: no
    module-config: "iterator"
    domain-insecure: "cluster.local"
    local-zone: "cluster.local." nodefault
forward-zone:
    name: "cluster.local"
    forward-addr: 127.0.0.1@{cluster}
    forward-tcp-upstream: yes
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream}
""")
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, unbound_exe(), "-d", "-c", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_udp(port)
    return p, [p.pid]


def write_files(tmp: Path) -> tuple[Path, Path]:
    warm_file, unique_file = tmp / "warm.txt", tmp / "unique.txt"
    warm_file.write_text("".join(f"{n} A\n" for n in names()))
    with unique_file.open("w") as f:
        for i in range(UNIQUE_LINES):
            f.write(f"10-{i >> 16 & 255}-{i >> 8 & 255}-{i & 255}.bench.pod.cluster.local A\n")
    return warm_file, unique_file


def probe_beside(port: int, miss_port: int, rest: Path, warm_file: Path, pids: list[int],
                 args: argparse.Namespace) -> tuple[dict, dict]:
    """The cached-name probe against ``port`` while ``rest`` (new names) is offered to
    ``miss_port`` at ``--miss-rate``: (probe result, miss load result)."""
    misses: dict = {}

    def miss_load() -> None:
        misses.update(load(miss_port, rest, args.duration + 2, 0, pids, args.miss_rate))
    t = threading.Thread(target=miss_load)
    t.start()
    time.sleep(1.5)                     # the miss load reads its file, then runs
    probe = load(port, warm_file, args.duration, 0, pids, args.probe_rate)
    t.join()
    return probe, misses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--probe-rate", type=int, default=5000)
    ap.add_argument("--miss-rate", type=int, default=30000)
    ap.add_argument("--servers", default="fastdns,unbound")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-bench-nodelocal-"))
    warm_file, unique_file = write_files(tmp)
    up_port, cl_port = free_port(), free_port()
    upstream = start_upstream(tmp, up_port)
    cluster, cluster_pids = start_cluster(tmp, cl_port)
    kinds = args.servers.split(",")
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    try:
        for r in range(args.rounds):
            for kind in (kinds if r % 2 == 0 else list(reversed(kinds))):
                port = free_port()
                p, pids = start_nodelocal(kind, tmp, port, cl_port, up_port)
                try:
                    warm(port, warm_file)
                    uniq = load(port, unique_file, args.duration, args.concurrency, pids)
                    if uniq["sent"] + REST_LINES > UNIQUE_LINES:
                        print(f"warning: {uniq['sent']} unique queries sent: names repeat",
                              flush=True)
                    alone = load(port, warm_file, args.duration, 0, pids, args.probe_rate)
                    # the misses beside the probe: names after those the closed loop asked
                    rest = tmp / f"rest-{kind}-{r}.txt"
                    with unique_file.open() as src, rest.open("w") as dst:
                        for i, line in enumerate(src):
                            if i >= uniq["sent"] + REST_LINES:
                                break
                            if i >= uniq["sent"]:
                                dst.write(line)
                    during, misses = probe_beside(port, port, rest, warm_file, pids, args)
                    # control: the same miss load sent to cluster DNS directly, so core 1
                    # is as busy but the node-local cache serves only the probe
                    control, _ = probe_beside(port, cl_port, rest, warm_file, pids, args)
                    rest.unlink()
                finally:
                    stop(p)
                row = {"unique": uniq, "probe_alone": alone, "probe_during": during,
                       "misses_during": misses, "probe_control": control}
                runs[kind].append(row)
                print(f"round {r + 1} {kind:8s} unique qps {uniq['qps']:>9.0f} lost {uniq['lost']:>6} "
                      f"p99 {uniq['latency_us']['p99']:>7.0f}us cpu {uniq['server_cpu']:.2f} | cached p99 "
                      f"alone {alone['latency_us']['p99']:>6.0f}us during misses "
                      f"{during['latency_us']['p99']:>6.0f}us (misses {misses.get('qps', 0):.0f}/s, "
                      f"lost {misses.get('lost', 0)}); control {control['latency_us']['p99']:>6.0f}us",
                      flush=True)
    finally:
        stop(cluster)
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    base = "unbound" if "unbound" in kinds else kinds[-1]
    ref = statistics.median(x["unique"]["qps"] for x in runs[base])
    print(f"\n{'node-local':10s} {'unique qps':>10s} {'x ' + base:>10s} {'lost':>6s} "
          f"{'cached p99 alone':>17s} {'during misses':>14s} {'control':>8s}")
    summary: dict = {"goal": GOAL}
    for kind in kinds:
        q = statistics.median(x["unique"]["qps"] for x in runs[kind])
        lost = sum(x["unique"]["lost"] for x in runs[kind])
        pa = statistics.median(x["probe_alone"]["latency_us"]["p99"] for x in runs[kind])
        pd = statistics.median(x["probe_during"]["latency_us"]["p99"] for x in runs[kind])
        pc = statistics.median(x["probe_control"]["latency_us"]["p99"] for x in runs[kind])
        summary[kind] = {"unique_qps": q, "ratio": q / ref, "lost": lost,
                         "cached_p99_alone_us": pa, "cached_p99_during_us": pd,
                         "cached_p99_control_us": pc}
        print(f"{kind:10s} {q:10.0f} {q / ref:10.2f} {lost:6d} {pa:17.0f} {pd:14.0f} {pc:8.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
