#!/usr/bin/env python3
"""The k8s-pod scenario against fastdns serve and Unbound serving the same names.

fastdns serves the bundled demo cluster (fastdns/demo/cluster.yaml, one
worker); Unbound (one thread) gets, as ``local-data``, every answer fastdns
gives to a name the scenario asks, in a static ``cluster.local`` zone, and
refuses everything else (as the demo, which forwards nothing).  Before
measuring, dnspython walks every distinct lookup against both servers and the
outcomes (positive or not, queries needed) must be equal.  Then
``fastdns-bench compare`` runs the scenario against both, interleaved.

    python benchmarks/bench_k8s_pod.py [--rounds 3] [--duration 5] [--concurrency 100]
                                       [--tcp] [--plot FILE.png] [--json FILE]

Servers on core 0, the client on core 1.  Loopback only.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastdns._testing.server import free_port

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_client_vs_dnsperf import unbound_config  # noqa: E402
from fastdns.bench.scenario import (
    glibc_candidates,
    k8s_pod_names,
    read_cluster,
    search_list,
)

DEMO = ROOT / "fastdns" / "demo" / "cluster.yaml"
SERVER_CPU, CLIENT_CPU = "0", "1"


def ask(port: int, name: str, qtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    return (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=port, timeout=3)


def wait_answering(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ask(port, "cluster.local.", "SOA").rcode() != dns.rcode.SERVFAIL:
                return
        except (OSError, dns.exception.DNSException):
            time.sleep(0.2)
    raise SystemExit(f"no server answers on 127.0.0.1:{port}")


def walk(port: int, pod_ns: str, name: str, tcp: bool = False) -> tuple[bool, int]:
    """glibc's res_search for one lookup, by dnspython: (positive, queries)."""
    names, done = glibc_candidates(name, search_list(pod_ns), 5)
    i, n = 0, 0
    while i >= 0:
        rs = [ask(port, names[i], t, tcp) for t in ("A", "AAAA")]
        n += 2
        if any(r.rcode() == dns.rcode.NOERROR and r.answer for r in rs):
            return True, n
        rc = rs[1].rcode() if rs[0].rcode() == dns.rcode.NOERROR else rs[0].rcode()
        i = (i + 1 if i + 1 < len(names) else -1) if rc in (0, 2, 3) else done[i]
    return False, n


def unbound_conf(tmp: Path, port: int, fastdns_port: int, pairs: list[tuple[str, str]]) -> Path:
    """Unbound's config: fastdns's positive answers for every candidate name as local-data."""
    data: set[str] = set()
    for pod_ns, name in set(pairs):
        for cand in glibc_candidates(name, search_list(pod_ns), 5)[0]:
            for t in ("A", "AAAA"):
                r = ask(fastdns_port, cand, t)
                for rrset in r.answer:
                    for rd in rrset:
                        data.add(f'    local-data: "{rrset.name} {rrset.ttl} IN '
                                 f'{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"\n')
    return unbound_config(tmp, port, f"""    incoming-num-tcp: 64
    local-zone: "." refuse
    local-zone: "cluster.local." static
{''.join(sorted(data))}""")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--lookups", type=int, default=10000)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--plot", metavar="FILE")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    unbound = shutil.which("unbound") or "/usr/sbin/unbound"
    if not Path(unbound).exists():
        raise SystemExit("unbound is not installed")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            fport, uport = free_port(), free_port()
            procs.append(subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "fastdns", "serve", "--port", str(fport),
                 "--workers", "1", "--log-level", "warning"], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_answering(fport)
            pairs = k8s_pod_names(read_cluster(DEMO), args.lookups)
            conf = unbound_conf(tmp, uport, fport, pairs)
            procs.append(subprocess.Popen(["taskset", "-c", SERVER_CPU, unbound, "-d", "-c", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            wait_answering(uport)
            distinct = sorted(set(pairs))
            f = {p: walk(fport, *p, tcp=args.tcp) for p in distinct}
            u = {p: walk(uport, *p, tcp=args.tcp) for p in distinct}
            diff = [p for p in distinct if f[p] != u[p]]
            ok = sum(f[p][0] for p in distinct)
            print(f"{len(distinct)} distinct lookups: {ok} positive on fastdns; "
                  f"fastdns and Unbound differ on {len(diff)}: {diff[:5]}", flush=True)
            if diff:
                return 1
            cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "fastdns.cli.bench", "compare",
                   "--target", f"fastdns=127.0.0.1:{fport}", "--target", f"unbound=127.0.0.1:{uport}",
                   "--scenario", "k8s-pod", "--cluster", str(DEMO), "--lookups", str(args.lookups),
                   "--rounds", str(args.rounds), "-l", str(args.duration), "-c", str(args.concurrency)]
            cmd += ["--tcp"] if args.tcp else []
            cmd += ["--plot", args.plot] if args.plot else []
            cmd += ["--json", args.json] if args.json else []
            print("$ " + " ".join(cmd[3:]).replace(sys.executable, "python"), flush=True)
            return subprocess.run(cmd, cwd=ROOT, check=False).returncode
        finally:
            for p in reversed(procs):
                stop(p)


if __name__ == "__main__":
    sys.exit(main())
