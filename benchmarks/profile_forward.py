#!/usr/bin/env python3
"""Where a fastdns worker's CPU goes under bench_forward's load: ``perf record`` on it.

The same servers as benchmarks/bench_forward.py (one fastdns worker on core 0 with
``cache`` + ``forward`` to benchmarks/responder.c; fastdns-bench and the responder on
core 1); the cache is warmed with its 1,000 names, then fastdns-bench runs the chosen
scenario (closed loop, 256 in flight) for 8 s and the worker is sampled for 3 s of it.

    python benchmarks/profile_forward.py [--scenario hit|miss10|unique] [--out DIR]
    perf report -i DIR/perf.data --no-children --sort symbol --stdio

Loopback only.  Needs gcc, taskset, perf.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_client_vs_dnsperf import free_port  # noqa: E402
from bench_forward import start_fastdns, start_upstream, write_queries  # noqa: E402
from bench_server import CLIENT_CPU, stop, warm  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=("hit", "miss10", "unique"), default="miss10")
    ap.add_argument("--out", default=None, help="where perf.data goes (default: a temp dir)")
    args = ap.parse_args()
    tmp = Path(args.out or tempfile.mkdtemp(prefix="fastdns-profile-"))
    tmp.mkdir(parents=True, exist_ok=True)
    warm_f, miss_f, uniq_f = write_queries(tmp, 2_000_000)
    qfile = {"hit": warm_f, "miss10": miss_f, "unique": uniq_f}[args.scenario]
    up = free_port()
    upstream = start_upstream(tmp, up)
    port = free_port()
    p, pids = start_fastdns(tmp, port, up)
    try:
        warm(port, warm_f)
        out = tmp / "result.json"
        client = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "run",
             "--server", f"127.0.0.1:{port}", "--queries", str(qfile), "--duration", "8",
             "--concurrency", "256", "--json", str(out), "--quiet"], stdout=subprocess.DEVNULL)
        time.sleep(4)                   # the client reads its file, then sends for 8 s
        subprocess.run(["perf", "record", "-F", "999", "-g", "-p", str(pids[0]),
                        "-o", str(tmp / "perf.data"), "--", "sleep", "3"],
                       check=True, capture_output=True)
        client.wait()
        print(f"{args.scenario}: {json.loads(out.read_text())['qps']:.0f} QPS; "
              f"perf report -i {tmp / 'perf.data'} --no-children --sort symbol --stdio")
    finally:
        stop(p)
        stop(upstream)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
