#!/usr/bin/env python3
"""The cost of metrics on the hot path: one fastdns worker with ``prometheus`` on vs off.

Two servers run side by side, identical but for ``prometheus 127.0.0.1:PORT``
(on: the engine counts per block — requests by proto/family/type, rcodes,
duration and size histograms — into its shared-memory row; off: only the
global counters).  Both are pinned to core 0 with ``taskset -c 0``; the load
(``python -m fastdns.cli.bench run``, closed loop, batching sendmmsg/recvmmsg)
runs on core 1.  Rounds alternate on/off; the ratio of the median QPS is
reported, and /metrics is scraped at the end (its request count must cover
every answered query of the "on" rounds).

    python benchmarks/bench_metrics.py [--rounds 4] [--duration 6] [--concurrency 256]
    python benchmarks/bench_metrics.py --micro [--batches 4000]

``--micro`` measures the engine alone, in this process pinned to core 0:
``Engine.serve_udp`` on a loopback socket holding 64 queries, alternating
batches with metrics on and off, nanoseconds per query (recvmmsg, answer,
sendmmsg included; the answer is the cheapest path, REFUSED, so the
counting's share is the largest it gets).  Less sensitive to other load on
the machine than the end-to-end rounds.

Loopback only.  Needs taskset.
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
sys.path.insert(0, str(HERE.parent))
from bench_client_vs_dnsperf import free_port, wait_udp
from bench_server import N_NAMES, children, load, names, stop, write_snapshot

from tests.ops_support import scrape, value


def start(tmp: Path, name: str, port: int, extra: str) -> subprocess.Popen:
    snap = tmp / "cluster.yaml"
    if not snap.exists():
        write_snapshot(snap)
    core = tmp / f"Corefile.{name}"
    core.write_text(f". {{\n  bind 127.0.0.1\n  kubernetes cluster.local {{\n    snapshot {snap}\n"
                    f"  }}\n  {extra}\n}}\n")
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "fastdns", "serve", "--conf", str(core),
           "--port", str(port), "--workers", "1", "--log-level", "warning"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def micro(batches: int) -> int:
    """Engine-level ns/query with metrics on vs off (alternating batches)."""
    import os
    import socket

    import dns.message
    from fastdns._loop import Engine

    from fastdns.config import parse
    from fastdns.routing import engine_config
    from fastdns.stats import CounterSegment

    os.sched_setaffinity(0, {0})
    plan = parse(". {\n  bind 127.0.0.1\n}\n", filename="bench")
    seg = CounterSegment.create(f"/fastdns-bench-{os.getpid()}-stats", 2)
    engines = {}
    for k, on in (("on", True), ("off", False)):
        e = Engine()
        conf = engine_config(plan)
        conf["metrics"] = on
        e.configure(conf)
        e.attach_counters(seg.row(0 if on else 1))
        engines[k] = e
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setblocking(False)
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    cli.setblocking(False)
    q = dns.message.make_query("svc-1.bench.svc.cluster.local.", "A").to_wire()
    addr = srv.getsockname()
    ns: dict[str, list[float]] = {"on": [], "off": []}
    misses: list = []
    try:
        for b in range(batches):
            k = "on" if b % 2 == 0 else "off"
            for _ in range(64):
                cli.sendto(q, addr)
            t0 = time.perf_counter_ns()
            n = engines[k].serve_udp(srv.fileno(), 0, misses, 1)
            dt = time.perf_counter_ns() - t0
            if n == 64:
                ns[k].append(dt / 64)
            while True:
                try:
                    cli.recv(512)
                except BlockingIOError:
                    break
        on_requests = sum(seg.row(0)[512:512 + 80])       # block 0's B_REQ counters
    finally:
        seg.unlink()
        srv.close()
        cli.close()
    med = {k: statistics.median(v) for k, v in ns.items()}
    print(f"engine ns/query (median of {len(ns['on'])}/{len(ns['off'])} batches of 64): "
          f"on {med['on']:.0f}  off {med['off']:.0f}  -> qps ratio on/off "
          f"{med['off'] / med['on']:.3f}")
    print(f"(requests the 'on' engine counted for block 0: {on_requests:,})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--micro", action="store_true", help="engine only (see above)")
    ap.add_argument("--batches", type=int, default=4000)
    args = ap.parse_args()
    if args.micro:
        return micro(args.batches)
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-bench-metrics-"))
    qfile = tmp / "queries"
    qfile.write_text("".join(f"{n} A\n" for n in names()))
    mport = free_port()
    ports = {"on": free_port(), "off": free_port()}
    procs = {"on": start(tmp, "on", ports["on"], f"prometheus 127.0.0.1:{mport}"),
             "off": start(tmp, "off", ports["off"], "")}
    results: dict[str, list[dict]] = {"on": [], "off": []}
    try:
        for k in procs:
            wait_udp(ports[k], 30)
        time.sleep(0.5)
        for r in range(args.rounds):
            for k in (("on", "off") if r % 2 == 0 else ("off", "on")):
                pids = [procs[k].pid] + children(procs[k].pid)
                res = load(ports[k], qfile, args.duration, args.concurrency, pids)
                results[k].append(res)
                print(f"round {r + 1} {k:>3}: {res['qps']:>10,.0f} qps  lost {res['lost']}  "
                      f"server cpu {res['server_cpu']:.0%}", flush=True)
        answered_on = sum(r["answered"] for r in results["on"])
        s = scrape(mport)
        counted = value(s, "coredns_dns_requests_total", type="A", proto="udp")
    finally:
        for p in procs.values():
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r["qps"] for r in v) for k, v in results.items()}
    ratio = med["on"] / med["off"]
    print(f"median qps: on {med['on']:,.0f}  off {med['off']:,.0f}  on/off {ratio:.3f}")
    print(f"/metrics coredns_dns_requests_total{{type=A,proto=udp}} = {counted:,.0f} "
          f"(answered in 'on' rounds: {answered_on:,}; plus probes)")
    if args.json:
        Path(args.json).write_text(json.dumps({"median_qps": med, "ratio": ratio,
                                               "rounds": results, "names": N_NAMES,
                                               "metrics_requests": counted}, indent=1))
    return 0 if counted >= answered_on else 1


if __name__ == "__main__":
    sys.exit(main())
