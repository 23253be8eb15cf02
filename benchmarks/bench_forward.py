#!/usr/bin/env python3
"""Caching forwarder: one fastdns worker vs Unbound (num-threads: 1), same run, same upstream.

Both servers forward ``.`` to the same loopback upstream (benchmarks/responder.c,
one A record per name, TTL 60) and cache.  Each server is pinned to core 0;
the load (fastdns-bench, batching sendmmsg/recvmmsg) and the upstream run on
core 1.  Every run starts a fresh server, warms its cache with 1,000 names
(one pass), then measures one scenario:

* ``hit``: the 1,000 warmed names, every answer from the cache;
* ``miss10``: 90 % warmed names, 10 % names never asked before (each once),
  so one query in ten goes upstream;
* ``unique``: every query a name never asked before: every one goes upstream.

Servers: ``fastdns`` (misses forwarded by the C engine), ``fastdns-py`` (the same
with ``FASTDNS_PYTHON_FORWARD=1``: the Python forwarder, as before issue 15) and
``unbound``.

Rounds alternate the order of the servers.  The server's CPU use during each
run (utime+stime from /proc) shows whether it was the bottleneck.

    python benchmarks/bench_forward.py [--rounds 3] [--duration 5] [--concurrency 256]
        [--servers fastdns,fastdns-py,unbound] [--scenarios hit,miss10,unique] [--rate QPS]
        [--json FILE]

``--rate``: open loop at that offered rate (latency from each query's intended send time)
for every server, so their p99 compare at the same load; the closed loop (default) gives
the most each can answer, and its p99 includes the queueing that load causes.

Loopback only.  Needs gcc, taskset, unbound.
"""

from __future__ import annotations

import argparse
import json
import os
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
MISS_LINES = 2_000_000      # the miss10 file: enough lines that a run never wraps around
UNIQUE_LINES = 1_000_000    # the unique file
GOALS = {"hit": 1.2, "miss10": 1.5, "unique": 1.5}     # x Unbound (issues 5 and 15)


def warm_names() -> list[str]:
    return [f"w{i}.fwd.example" for i in range(N_WARM)]


def write_queries(tmp: Path, miss_lines: int = MISS_LINES) -> tuple[Path, Path, Path]:
    warm_file, miss_file, unique_file = tmp / "warm.txt", tmp / "miss10.txt", tmp / "unique.txt"
    names = warm_names()
    warm_file.write_text("".join(f"{n} A\n" for n in names))
    with miss_file.open("w") as f:
        for i in range(miss_lines):
            f.write(f"new{i}.fwd.example A\n" if i % 10 == 9 else f"{names[i % N_WARM]} A\n")
    with unique_file.open("w") as f:
        for i in range(UNIQUE_LINES):
            f.write(f"u{i}.fwd.example A\n")
    return warm_file, miss_file, unique_file


def start_upstream(tmp: Path, port: int) -> subprocess.Popen:
    exe = tmp / "responder"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "responder.c")], check=True)
    p = subprocess.Popen(["taskset", "-c", CLIENT_CPU, str(exe), str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_udp(port)
    return p


def start_fastdns(tmp: Path, port: int, upstream: int,
                  python_forward: bool = False) -> tuple[subprocess.Popen, list[int]]:
    core = tmp / "Corefile"
    core.write_text(f". {{\n  bind 127.0.0.1\n  cache\n  forward . 127.0.0.1:{upstream}\n}}\n")
    env = dict(os.environ, FASTDNS_PYTHON_FORWARD="1" if python_forward else "0")
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, sys.executable, "-m", "fastdns", "serve",
                          "--conf", str(core), "--port", str(port), "--workers", "1",
                          "--log-level", "warning"], env=env,
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


def load(port: int, qfile: Path, duration: int, concurrency: int, pids: list[int],
         rate: int = 0) -> dict:
    """One fastdns-bench run; ``server_cpu`` = server CPU seconds per second of sending
    (the client's start-up, reading the query file, is not counted as idle server time)."""
    out = Path(tempfile.mktemp(suffix=".json"))
    cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "run",
           "--server", f"127.0.0.1:{port}", "--queries", str(qfile), "--duration", str(duration),
           *(["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]),
           "--json", str(out), "--quiet"]
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
    ap.add_argument("--rate", type=int, default=0,
                    help="open loop at this many queries/s (latency at an equal offered load) "
                         "instead of the closed loop")
    ap.add_argument("--miss-lines", type=int, default=MISS_LINES,
                    help="lines of the miss10 file (a shorter file loads faster: fastdns-bench "
                         "reads it whole before it starts)")
    ap.add_argument("--servers", default="fastdns,fastdns-py,unbound")
    ap.add_argument("--scenarios", default="hit,miss10,unique")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-bench-fwd-"))
    warm_file, miss_file, unique_file = write_queries(tmp, args.miss_lines)
    up_port = free_port()
    upstream = start_upstream(tmp, up_port)
    kinds = args.servers.split(",")
    files = {"hit": warm_file, "miss10": miss_file, "unique": unique_file}
    scenarios = {k: files[k] for k in args.scenarios.split(",")}
    results: dict[str, dict[str, list[dict]]] = {s: {k: [] for k in kinds} for s in scenarios}
    try:
        for r in range(args.rounds):
            for scen, qfile in scenarios.items():
                for kind in (kinds if r % 2 == 0 else list(reversed(kinds))):
                    port = free_port()
                    if kind == "unbound":
                        p, pids = start_unbound(tmp, port, up_port)
                    else:
                        p, pids = start_fastdns(tmp, port, up_port, kind == "fastdns-py")
                    try:
                        warm(port, warm_file)
                        res = load(port, qfile, args.duration, args.concurrency, pids, args.rate)
                    finally:
                        stop(p)
                    lines = {"miss10": args.miss_lines, "unique": UNIQUE_LINES}.get(scen)
                    if lines and res["sent"] >= lines:
                        print(f"warning: {res['sent']} queries sent, the {scen} file has "
                              f"{lines} lines: new names were repeated", flush=True)
                    results[scen][kind].append(res)
                    print(f"round {r + 1} {scen:6s} {kind:8s} qps {res['qps']:>10.0f}  "
                          f"lost {res['lost']:>6}  p99 {res['latency_us']['p99']:>7.0f}us  "
                          f"server cpu {res['server_cpu']:.2f}", flush=True)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    base = "unbound" if "unbound" in kinds else kinds[-1]
    print(f"{'scenario':8s} {'server':10s} {'qps':>10s} {'x ' + base:>10s} {'p99 us':>8s} "
          f"{'lost':>6s} {'cpu':>5s}")
    summary: dict[str, dict] = {}
    for scen in scenarios:
        ref = statistics.median(x["qps"] for x in results[scen][base])
        summary[scen] = {"goal": GOALS[scen]}
        for kind in kinds:
            runs = results[scen][kind]
            q = statistics.median(x["qps"] for x in runs)
            p99 = statistics.median(x["latency_us"]["p99"] for x in runs)
            lost = sum(x["lost"] for x in runs)
            cpu = statistics.median(x["server_cpu"] for x in runs)
            summary[scen][kind] = {"qps": q, "ratio": q / ref, "p99_us": p99, "lost": lost,
                                   "server_cpu": cpu}
            print(f"{scen:8s} {kind:10s} {q:10.0f} {q / ref:10.2f} {p99:8.0f} {lost:6d} {cpu:5.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
