#!/usr/bin/env python3
"""Open loop: CPU per answer of fastdns-bench and dnsperf at the same offered rate (issue 19).

Both clients offer ``--rate`` queries/s for ``--duration`` s to benchmarks/responder.c
(pinned to core 0; the clients to core 1), alternating, ``--rounds`` times; each
client's CPU (user + system, from ``wait4``: the whole process, start-up and reading
its 1,000-line query file included) is divided by the answers it got.

    python benchmarks/bench_openloop_cpu.py [--rate 100000] [--duration 5] [--rounds 3]

Loopback only.  Needs gcc, taskset, dnsperf.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_client_vs_dnsperf import free_port, wait_udp  # noqa: E402
from bench_server import stop  # noqa: E402

CLIENT_CPU, SERVER_CPU = "1", "0"


def run(cmd: list[str]) -> tuple[str, float]:
    """(stdout, CPU seconds) of one client run."""
    p = subprocess.Popen(["taskset", "-c", CLIENT_CPU, *cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read() if p.stdout else ""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {out[-2000:]}")
    return out, ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-openloop-"))
    qfile = tmp / "q.txt"
    qfile.write_text("".join(f"n{i}.example.com A\n" for i in range(1000)))
    exe = tmp / "responder"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "responder.c")], check=True)
    port = free_port()
    resp = subprocess.Popen(["taskset", "-c", SERVER_CPU, str(exe), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_udp(port)
    rows: dict[str, list[dict]] = {"fastdns-bench": [], "dnsperf": []}
    try:
        for r in range(args.rounds):
            order = list(rows) if r % 2 == 0 else list(reversed(rows))
            for kind in order:
                if kind == "dnsperf":
                    out, cpu = run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile),
                                    "-l", str(args.duration), "-Q", str(args.rate), "-T", "1",
                                    "-c", "8", "-q", "10000"])
                    answered = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
                    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
                else:
                    res = tmp / "r.json"
                    _, cpu = run([sys.executable, "-m", "fastdns.cli.bench", "run", "--server",
                                  f"127.0.0.1:{port}", "--queries", str(qfile), "--duration",
                                  str(args.duration), "--rate", str(args.rate), "--json", str(res),
                                  "--quiet"])
                    d = json.loads(res.read_text())
                    answered, sent = d["answered"], d["sent"]
                row = {"answered": answered, "sent": sent, "cpu_s": cpu,
                       "us_per_answer": cpu / max(1, answered) * 1e6,
                       "achieved": answered / args.duration}
                rows[kind].append(row)
                print(f"round {r + 1} {kind:13s} sent {sent:>8} answered {answered:>8} "
                      f"cpu {cpu:6.2f}s  {row['us_per_answer']:5.2f} us/answer", flush=True)
    finally:
        stop(resp)
    f = statistics.median(x["us_per_answer"] for x in rows["fastdns-bench"])
    d = statistics.median(x["us_per_answer"] for x in rows["dnsperf"])
    print(f"\nmedian CPU per answer: fastdns-bench {f:.2f} us, dnsperf {d:.2f} us: "
          f"{f / d:.2f}x dnsperf's (goal <= 0.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
