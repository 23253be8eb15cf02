#!/usr/bin/env python3
"""Caching forwarder: one fastdns worker vs Unbound (num-threads: 1), same run, same upstream.

Both servers forward ``.`` to the same loopback upstream (benchmarks/responder.c,
one A record per name, TTL 60) and cache.  Each server is pinned to core 0;
the load (fastdns-bench, batching sendmmsg/recvmmsg) and the upstream run on
core 1.  Every run starts a fresh server, warms its cache with 1,000 names
(one pass), then measures one scenario:

* ``hit``: the 1,000 warmed names, every answer from the cache;
* ``miss10``: 90 % warmed names, 10 % names never asked before (each once),
  so one query in ten goes upstream.

Rounds alternate the order of the servers.  The server's CPU use during each
run (utime+stime from /proc) shows whether it was the bottleneck.

    python benchmarks/bench_forward.py [--rounds 3] [--duration 5] [--concurrency 256]
        [--json FILE]

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
from bench_client_vs_dnsperf import (
    cpu_seconds,
    free_port,
    unbound_config,
    unbound_exe,
    wait_udp,
)
from bench_server import CLIENT_CPU, SERVER_CPU, children, stop, warm

N_WARM = 1000
MISS_LINES = 1_500_000      # the miss10 file: enough lines that a run never wraps around


def warm_names() -> list[str]:
    return [f"w{i}.fwd.example" for i in range(N_WARM)]


def write_queries(tmp: Path) -> tuple[Path, Path]:
    warm_file, miss_file = tmp / "warm.txt", tmp / "miss10.txt"
    names = warm_names()
    warm_file.write_text("".join(f"{n} A\n" for n in names))
    with miss_file.open("w") as f:
        for i in range(MISS_LINES):
            f.write(f"new{i}.fwd.example A\n" if i % 10 == 9 else f"{names[i % N_WARM]} A\n")
    return warm_file, miss_file


def start_upstream(tmp: Path, port: int) -> subprocess.Popen:
    exe = tmp / "responder"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "responder.c")], check=True)
    p = subprocess.Popen(["taskset", "-c", CLIENT_CPU, str(exe), str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_udp(port)
    return p


def start_fastdns(tmp: Path, port: int, upstream: int) -> tuple[subprocess.Popen, list[int]]:
    core = tmp / "Corefile"
    core.write_text(f". {{\n  bind 127.0.0.1\n  cache\n  forward . 127.0.0.1:{upstream}\n}}\n")
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, sys.executable, "-m", "fastdns", "serve",
                          "--conf", str(core), "--port", str(port), "--workers", "1",
                          "--log-level", "warning"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_udp(port, 30)
    time.sleep(0.3)
    return p, children(p.pid)


def start_unbound(tmp: Path, port: int, upstream: int) -> tuple[subprocess.Popen, list[int]]:
    exe = unbound_exe()
    conf = unbound_config(tmp, port, f"""    do-not-query-localhost: no
    module-config: "iterator"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream}
""")
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, exe, "-d", "-c", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_udp(port)
    return p, [p.pid]


def load(port: int, qfile: Path, duration: int, concurrency: int, pids: list[int]) -> dict:
    """One fastdns-bench run; ``server_cpu`` = server CPU seconds per second of sending
    (the client's start-up, reading the query file, is not counted as idle server time)."""
    out = Path(tempfile.mktemp(suffix=".json"))
    cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "run",
           "--server", f"127.0.0.1:{port}", "--queries", str(qfile), "--duration", str(duration),
           "--concurrency", str(concurrency), "--json", str(out), "--quiet"]
    c0 = sum(cpu_seconds(p) for p in pids)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    res = json.loads(out.read_text())
    out.unlink()
    res["server_cpu"] = (sum(cpu_seconds(p) for p in pids) - c0) / res["duration_s"]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-bench-fwd-"))
    warm_file, miss_file = write_queries(tmp)
    up_port = free_port()
    upstream = start_upstream(tmp, up_port)
    kinds = ["fastdns", "unbound"]
    scenarios = {"hit": warm_file, "miss10": miss_file}
    results: dict[str, dict[str, list[dict]]] = {s: {k: [] for k in kinds} for s in scenarios}
    try:
        for r in range(args.rounds):
            for scen, qfile in scenarios.items():
                for kind in (kinds if r % 2 == 0 else list(reversed(kinds))):
                    port = free_port()
                    start = start_fastdns if kind == "fastdns" else start_unbound
                    p, pids = start(tmp, port, up_port)
                    try:
                        warm(port, warm_file)
                        res = load(port, qfile, args.duration, args.concurrency, pids)
                    finally:
                        stop(p)
                    if scen == "miss10" and res["sent"] >= MISS_LINES:
                        print(f"warning: {res['sent']} queries sent, the miss file has "
                              f"{MISS_LINES} lines: new names were repeated", flush=True)
                    results[scen][kind].append(res)
                    print(f"round {r + 1} {scen:6s} {kind:8s} qps {res['qps']:>10.0f}  "
                          f"lost {res['lost']:>6}  p99 {res['latency_us']['p99']:>7.0f}us  "
                          f"server cpu {res['server_cpu']:.2f}", flush=True)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'scenario':8s} {'fastdns qps':>12s} {'unbound qps':>12s} {'ratio':>7s} {'goal':>6s}")
    summary = {}
    for scen in scenarios:
        f = statistics.median(x["qps"] for x in results[scen]["fastdns"])
        u = statistics.median(x["qps"] for x in results[scen]["unbound"])
        goal = 1.2 if scen == "hit" else 1.0
        summary[scen] = {"fastdns": f, "unbound": u, "ratio": f / u, "goal": goal}
        print(f"{scen:8s} {f:12.0f} {u:12.0f} {f / u:7.2f} {goal:6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
