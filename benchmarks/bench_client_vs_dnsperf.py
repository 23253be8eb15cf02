#!/usr/bin/env python3
"""fastdns-bench vs dnsperf -T 1, alternating in the same run, same server.

The server (benchmarks/responder.c, the machine's ceiling, or Unbound) is
pinned to core 0, both clients to core 1.  Each round runs dnsperf then
fastdns-bench (reversed on odd rounds) with the same query file, duration and
outstanding-query bound; the server's CPU use is read from /proc/PID/stat
(utime+stime) during each run.  Prints a table and the median ratio.

    python benchmarks/bench_client_vs_dnsperf.py [--server responder|unbound|both]
        [--rounds 3] [--duration 10] [--outstanding 200] [--tcp [--connections 8]]
        [--ceiling] [--json FILE]

``--ceiling`` adds benchmarks/batchloop.c, a minimal sendmmsg/recvmmsg loop (8 sockets
x 128 in flight, batches of 64), to the rotation: the ceiling of a UDP load loop here.

With ``--tcp`` both clients use DNS over TCP with the same number of
connections (dnsperf ``-m tcp -c N``, fastdns-bench ``--tcp --connections N``)
against ``responder -t`` (pipelined, epoll) or Unbound.

Needs gcc, taskset, dnsperf; Unbound for --server unbound.  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastdns._testing.server import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, CLIENT_CPU = "0", "1"
TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time (all cores) not idle since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / TICK


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_udp(port: int, timeout: float = 10.0) -> None:
    q = bytes.fromhex("abcd01000001000000000000") + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                s.sendto(q, ("127.0.0.1", port))
                s.recv(512)
                return
            except OSError:
                time.sleep(0.1)
    raise SystemExit(f"server on port {port} does not answer")


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    q = bytes.fromhex("abcd01000001000000000000") + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(len(q).to_bytes(2, "big") + q)
                if len(s.recv(512)) > 2:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on TCP port {port} does not answer")


TCP = False
CONNECTIONS = 8


def start_responder(tmp: Path, port: int) -> subprocess.Popen:
    exe = tmp / "responder"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "benchmarks/responder.c")], check=True)
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, str(exe), *(["-t"] if TCP else []), str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (wait_tcp if TCP else wait_udp)(port)
    return p


def unbound_config(tmp: Path, port: int, body: str) -> Path:
    """An unbound.conf for one thread on 127.0.0.1:PORT in the foreground, no
    chroot, syslog or remote control; ``body`` adds server options (indented)
    and may open further clauses (``forward-zone:``)."""
    conf = tmp / "unbound.conf"
    conf.write_text(f"""server:
    interface: 127.0.0.1
    port: {port}
    num-threads: 1
    do-daemonize: no
    chroot: ""
    username: ""
    pidfile: ""
    directory: "{tmp}"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    so-rcvbuf: 8m
    so-sndbuf: 8m
{body}remote-control:
    control-enable: no
""")
    return conf


def unbound_exe() -> str:
    exe = shutil.which("unbound") or "/usr/sbin/unbound"
    if not Path(exe).exists():
        raise SystemExit("unbound is not installed")
    return exe


def start_unbound(tmp: Path, port: int, names: list[str],
                  zone: str = "example.com.") -> subprocess.Popen:
    """Unbound, one thread, pinned to the server core, answering ``names`` (A)
    from local-data in a static local zone ``zone``."""
    exe = unbound_exe()
    local = "".join(f'    local-data: "{n}. 60 IN A 192.0.2.1"\n' for n in names)
    conf = unbound_config(tmp, port, f"""    incoming-num-tcp: 256
    msg-cache-size: 64m
    rrset-cache-size: 64m
    local-zone: "{zone}" static
{local}""")
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, exe, "-d", "-c", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (wait_tcp if TCP else wait_udp)(port)
    return p


SERVER_PID = 0


OTHERS: list[float] = []


def run_measured(cmd: list[str], duration: int) -> tuple[str, float]:
    """Run a client; the server's CPU % is measured from 1.5 s after its start
    to 0.5 s before its end (steady state, no start-up).  The CPU % used by
    every other process meanwhile (all busy time minus server and client) is
    appended to OTHERS: a disturbed round shows there."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1.5)
    c0, t0, b0, k0 = cpu_seconds(SERVER_PID), time.monotonic(), busy_seconds(), cpu_seconds(p.pid)
    time.sleep(max(0.5, duration - 2.0))
    srv, cli = cpu_seconds(SERVER_PID) - c0, cpu_seconds(p.pid) - k0
    dt = time.monotonic() - t0
    cpu = round(100 * srv / dt, 1)
    OTHERS.append(round(100 * (busy_seconds() - b0 - srv - cli) / dt, 1))
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return out, cpu


def run_dnsperf(port: int, qfile: Path, duration: int, outstanding: int) -> dict:
    cmd = ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile),
           "-l", str(duration), "-c", str(CONNECTIONS) if TCP else "1", "-T", "1", "-q", str(outstanding),
           "-t", "2", *(["-m", "tcp"] if TCP else [])]
    out, cpu = run_measured(cmd, duration)
    num = lambda pat: float(re.search(pat, out).group(1))
    return {"cmd": " ".join(cmd[3:]), "qps": num(r"Queries per second:\s+([\d.]+)"),
            "sent": num(r"Queries sent:\s+(\d+)"), "answered": num(r"Queries completed:\s+(\d+)"),
            "lost": num(r"Queries lost:\s+(\d+)"),
            "p50_us": None, "server_cpu_pct": cpu}


def run_fastdns_bench(port: int, qfile: Path, duration: int, outstanding: int) -> dict:
    cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "run", "-s",
           f"127.0.0.1:{port}", "--queries", str(qfile), "-l", str(duration), "-c", str(outstanding),
           "-t", "2", "-q", "--json", "-", *(["--tcp", "--connections", str(CONNECTIONS)] if TCP else [])]
    out, cpu = run_measured(cmd, duration)
    d = json.loads(out)    # --json -: stdout is the JSON object alone
    return {"cmd": "fastdns-bench " + " ".join(cmd[6:]), "qps": d["qps"], "sent": d["sent"],
            "answered": d["answered"], "lost": d["lost"], "late": d["late"],
            "p50_us": d["latency_us"]["p50"], "server_cpu_pct": cpu}


def run_batchloop(port: int, qfile: Path, duration: int, outstanding: int) -> dict:
    """benchmarks/batchloop.c: the minimal sendmmsg/recvmmsg loop (8 sockets x 128 in
    flight, batches of 64), the ceiling a UDP load loop on this machine reaches."""
    exe = Path(tempfile.gettempdir()) / f"fastdns-batchloop-{os.getpid()}"
    if not exe.exists():
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "benchmarks/batchloop.c")], check=True)
    cmd = ["taskset", "-c", CLIENT_CPU, str(exe), "127.0.0.1", str(port), str(qfile), str(duration),
           "8", "128", "64"]
    out, cpu = run_measured(cmd, duration)
    d = json.loads(out)
    return {"cmd": "batchloop " + " ".join(cmd[4:]), "qps": d["qps"], "sent": d["sent"],
            "answered": d["answered"], "lost": d["lost"], "p50_us": None, "server_cpu_pct": cpu}


def bench_server(kind: str, args: argparse.Namespace, tmp: Path, qfile: Path, names: list[str]) -> dict:
    port = free_port()
    global SERVER_PID
    proc = start_responder(tmp, port) if kind == "responder" else start_unbound(tmp, port, names)
    SERVER_PID = proc.pid   # taskset execs the server: same PID
    clients = ["dnsperf", "fastdns-bench"] + (["batchloop"] if args.ceiling else [])
    rows: dict[str, list[dict]] = {c: [] for c in clients}
    runners = {"dnsperf": run_dnsperf, "fastdns-bench": run_fastdns_bench, "batchloop": run_batchloop}
    try:
        for r in range(args.rounds):
            order = clients if r % 2 == 0 else clients[::-1]
            for client in order:
                fn = runners[client]
                res = fn(port, qfile, args.duration, args.outstanding)
                res["others_cpu_pct"] = OTHERS[-1]
                rows[client].append(res)
                print(f"  {kind:<9} round {r + 1} {client:<13} qps {res['qps']:>10,.0f}  "
                      f"lost {res['lost']:>6,.0f}  server cpu {res['server_cpu_pct']:5.1f}%  "
                      f"other processes {res['others_cpu_pct']:5.1f}%", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    m = {c: statistics.median(x["qps"] for x in v) for c, v in rows.items()}
    ratios = [f["qps"] / d["qps"] for f, d in zip(rows["fastdns-bench"], rows["dnsperf"])]
    summary = {"server": kind, "rounds": rows, "median_qps": m,
               "ratio_median": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios],
               "server_reported": err.strip()}
    if args.ceiling:
        vs = [f["qps"] / c["qps"] for f, c in zip(rows["fastdns-bench"], rows["batchloop"])]
        summary["vs_ceiling_median"] = round(statistics.median(vs), 3)
        summary["vs_ceiling"] = [round(x, 3) for x in vs]
    if kind == "responder":
        served = int(re.search(r"answered (\d+)", err).group(1))
        answered = sum(x["answered"] for v in rows.values() for x in v)
        sent = sum(x["sent"] for v in rows.values() for x in v)
        summary["count_check"] = {"clients_answered": answered, "server_answered": served, "clients_sent": sent,
                                  "ok": answered <= served <= sent + 100}
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["responder", "unbound", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--outstanding", type=int, default=200)
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--tcp", action="store_true", help="both clients over TCP")
    ap.add_argument("--connections", type=int, default=8, help="TCP connections per client (default 8)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also benchmarks/batchloop.c, the minimal batching loop (UDP only)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if args.ceiling and args.tcp:
        raise SystemExit("--ceiling is UDP only")
    global TCP, CONNECTIONS
    TCP, CONNECTIONS = args.tcp, args.connections
    for tool in ("gcc", "taskset", "dnsperf"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        names = [f"name{i}.example.com" for i in range(args.names)]
        qfile = tmp / "queries.txt"
        qfile.write_text("".join(f"{n} A\n" for n in names))
        for kind in (["responder", "unbound"] if args.server == "both" else [args.server]):
            results.append(bench_server(kind, args, tmp, qfile, names))
    print()
    print(f"protocol: {'tcp, ' + str(CONNECTIONS) + ' connections per client' if TCP else 'udp'}")
    print(f"{'server':<10} {'dnsperf -T 1 QPS':>17} {'fastdns-bench QPS':>18} {'ratio (median)':>15}  per round"
          "   server CPU % (dnsperf / fastdns-bench, median)")
    for s in results:
        print(f"{s['server']:<10} {s['median_qps']['dnsperf']:>17,.0f} {s['median_qps']['fastdns-bench']:>18,.0f} "
              f"{s['ratio_median']:>15.2f}  {s['ratios']}   "
              f"{statistics.median(x['server_cpu_pct'] for x in s['rounds']['dnsperf'])} / "
              f"{statistics.median(x['server_cpu_pct'] for x in s['rounds']['fastdns-bench'])}")
        print(f"{'':<10} other processes' CPU % per round (dnsperf / fastdns-bench): "
              f"{[x['others_cpu_pct'] for x in s['rounds']['dnsperf']]} / "
              f"{[x['others_cpu_pct'] for x in s['rounds']['fastdns-bench']]}")
        if "vs_ceiling" in s:
            print(f"{'':<10} fastdns-bench / batchloop (the minimal batching loop): median "
                  f"{s['vs_ceiling_median']:.2f}  per round {s['vs_ceiling']}; batchloop median "
                  f"{s['median_qps']['batchloop']:,.0f} QPS")
        if "count_check" in s:
            print(f"{'':<10} counts: clients answered {s['count_check']['clients_answered']:,.0f} <= server "
                  f"answered {s['count_check']['server_answered']:,} <= clients sent "
                  f"{s['count_check']['clients_sent']:,.0f} (+probes): {s['count_check']['ok']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
