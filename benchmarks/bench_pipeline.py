"""End to end: Kubernetes objects → coordinator compile/encode → snapshot →
workers' answer tables, timed and sized on a generated cluster.

    python benchmarks/bench_pipeline.py [--source api|snapshot] [--corefile kubeadm|minimal]
                                        [--services 10000] [--endpoints 50000]
                                        [--workers 2] [--port 0] [--changes 3]

1. The cluster of ``bench_index.py`` is served either by a list/watch API
   server on loopback (``--source api``, :class:`fastdns._testing.k8sapi.FakeAPI`:
   the coordinator then loads the official ``kubernetes`` client, as in a
   real cluster) or written as a ``kubectl get -o json`` ``List`` file
   (``--source snapshot``).  A real ``fastdns serve --workers N`` runs on a
   loopback port with kubeadm's Corefile (``--corefile kubeadm``: errors,
   health, ready, kubernetes, prometheus, forward (to a stub upstream on
   loopback instead of /etc/resolv.conf), cache, loop, reload, loadbalance)
   or only the ``kubernetes`` block (``--corefile minimal``).
2. Time from the process start until the last name (and a headless name) is
   answered correctly from many source ports (SO_REUSEPORT hashes by source
   port, so every worker is hit).
3. RSS (VmRSS, and the peak VmHWM) of the coordinator (the serve process)
   and of each worker, from /proc.
4. One EndpointSlice changes (a new address: a watch event, or a new file
   renamed over the old one): time until every source port sees it.

Goals (issue 3): coordinator memory < (pods + services)/1000 + 54 MB, a change
visible on every worker within 1 s.  Prints one result line (``--json`` for
a dict).  Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import msgspec

from fastdns._testing.k8sapi import FakeAPI
from fastdns._testing.server import free_port
from fastdns._testing.upstream import StubUpstream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import generate_raw

API = {"Service": "v1", "Namespace": "v1", "EndpointSlice": "discovery.k8s.io/v1"}
NEW_IP = "198.51.100.77"        # TEST-NET-2: only ever data in an answer


def cluster_json(raw: list[tuple[str, dict]]) -> bytes:
    """The objects as ``kubectl get ... -A -o json`` prints them (a v1 List)."""
    items = [{"apiVersion": API[k], "kind": k, **obj} for k, obj in raw]
    return msgspec.json.encode({"apiVersion": "v1", "kind": "List", "items": items})


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a sibling file and rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of ``pid`` in kB (empty if it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the workers of a serve process)."""
    kids: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return sorted(kids)


class Prober:
    """One UDP socket per source port; asks all of them the same question."""

    def __init__(self, port: int, nports: int) -> None:
        self.addr = ("127.0.0.1", port)
        self.socks = []
        for _ in range(nports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)

    def close(self) -> None:
        for s in self.socks:
            s.close()

    def ask(self, qname: str, qtype: str, timeout: float = 0.3) -> list[dns.message.Message | None]:
        """The response each source port got (None: no answer within ``timeout``)."""
        wire = []
        for s in self.socks:
            q = dns.message.make_query(qname, qtype)
            wire.append(q)
            s.sendto(q.to_wire(), self.addr)
        out: list[dns.message.Message | None] = [None] * len(self.socks)
        deadline = time.monotonic() + timeout
        pending = set(range(len(self.socks)))
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                try:
                    data = self.socks[i].recv(65535)
                except BlockingIOError:
                    continue
                try:
                    m = dns.message.from_wire(data)
                except Exception:  # noqa: BLE001 - a bad answer counts as none
                    continue
                if m.id == wire[i].id:
                    out[i] = m
                    pending.discard(i)
            if pending:
                time.sleep(0.001)
        return out


def addresses(m: dns.message.Message | None, rdtype: int) -> set[str]:
    """The addresses of ``rdtype`` in the answer section of ``m``."""
    if m is None or m.rcode() != 0:
        return set()
    return {rd.to_text() for rr in m.answer if rr.rdtype == rdtype for rd in rr}


def wait_until(pred: Any, timeout: float, step: float = 0.005) -> float | None:
    """Seconds until ``pred()`` is true (None on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return None


KUBEADM = """. {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health} {{
       lameduck 5s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
       {source}
    }}
    prometheus 127.0.0.1:{metrics}
    forward . {upstream} {{
       max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""

MINIMAL = """. {{
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        {source}
    }}
}}
"""


def api_object(kind: str, obj: dict) -> dict:
    """A generated object as the API serves it."""
    return {"apiVersion": API[kind], "kind": kind, **obj}


def run(a: argparse.Namespace) -> dict[str, Any]:
    raw = generate_raw(a.services, a.endpoints)
    # the probes: the last Service (compiled last), and a headless one whose A records
    # are its endpoints' addresses (the change below edits its EndpointSlice)
    last_svc = next(o for k, o in reversed(raw) if k == "Service")["metadata"]
    headless = next(o for k, o in raw if k == "Service" and o["spec"].get("clusterIP") == "None")
    h_meta = headless["metadata"]
    slice_i = next(i for i, (k, o) in enumerate(raw) if k == "EndpointSlice"
                   and o["metadata"]["labels"]["kubernetes.io/service-name"] == h_meta["name"])
    last_name = f"{last_svc['name']}.{last_svc['namespace']}.svc.cluster.local."
    h_name = f"{h_meta['name']}.{h_meta['namespace']}.svc.cluster.local."
    last_type = "CNAME" if raw[-1][0] == "Service" else "A"

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fastdns-bench-pipeline-"))
        snap = Path(tmp) / "cluster.json"
        data = cluster_json(raw)
        api = None
        if a.source == "snapshot":
            write_atomic(snap, data)
            source = f"snapshot {snap}"
        else:
            api = FakeAPI()
            for kind, obj in raw:
                api.put(api_object(kind, obj))
            api.compact()                   # no history to replay: watches start at the list
            api.start()
            stack.callback(api.stop)
            source = f"kubeconfig {api.kubeconfig(str(Path(tmp) / 'kubeconfig'))}"
        port = a.port or free_port()
        conf = Path(tmp) / "Corefile"
        if a.corefile == "kubeadm":
            upstream = stack.enter_context(StubUpstream())
            conf.write_text(KUBEADM.format(source=source, upstream=upstream.hostport,
                                           health=free_port(), ready=free_port(),
                                           metrics=free_port()))
        else:
            conf.write_text(MINIMAL.format(source=source))
        errlog = stack.enter_context(open(Path(tmp) / "serve.log", "w+b"))
        prober = Prober(port, a.probes)
        t_start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "fastdns", "serve", "--conf", str(conf),
                                 "--workers", str(a.workers), "--port", str(port),
                                 "--log-level", "warning"],
                                stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            def all_answer() -> bool:
                if proc.poll() is not None:
                    errlog.seek(0)
                    raise SystemExit(f"fastdns serve exited: {errlog.read().decode()[-2000:]}")
                rs = prober.ask(last_name, last_type)
                return all(r is not None and r.rcode() == 0 and r.answer for r in rs)

            ready_s = wait_until(all_answer, a.timeout, 0.05)
            if ready_s is None:
                raise SystemExit(f"not all {a.probes} source ports answered {last_name} "
                                 f"within {a.timeout} s")
            t_ready = time.monotonic() - t_start
            before = prober.ask(h_name, "A", 5.0)     # returns once every port answered
            h_addrs = addresses(before[0], dns.rdatatype.A)
            assert h_addrs and all(addresses(r, dns.rdatatype.A) == h_addrs for r in before)
            time.sleep(a.settle)
            coord = proc_status(proc.pid)
            workers = {pid: proc_status(pid) for pid in children(proc.pid)}

            # one EndpointSlice change per round: a new address on the headless service
            change_s = []
            for n in range(a.changes):
                ip = NEW_IP[:-2] + str(10 + n)
                sl = raw[slice_i][1]
                eps = [dict(e) for e in sl["endpoints"]]
                eps[0] = {**eps[0], "addresses": [ip], "conditions": {"ready": True}}
                raw[slice_i] = ("EndpointSlice", {**sl, "endpoints": eps})
                if api is None:
                    data = cluster_json(raw)
                    t0 = time.monotonic()
                    write_atomic(snap, data)
                else:
                    obj = api_object(*raw[slice_i])
                    t0 = time.monotonic()
                    api.put(obj)

                def changed(ip: str = ip) -> bool:
                    rs = prober.ask(h_name, "A", 0.2)
                    return all(ip in addresses(r, dns.rdatatype.A) for r in rs)

                dt = wait_until(changed, 10.0, 0.002)
                if dt is None:
                    raise SystemExit(f"change {n}: {ip} not answered by every worker within 10 s")
                change_s.append(time.monotonic() - t0)
                time.sleep(0.3)
            coord_after = proc_status(proc.pid)
            workers_after = {pid: proc_status(pid) for pid in children(proc.pid)}
        finally:
            prober.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    budget = (a.endpoints + a.services) / 1000 + 54
    coord_mb = coord.get("VmRSS", 0) / 1024
    result = {
        "source": a.source, "corefile": a.corefile,
        "services": a.services, "endpoints": a.endpoints, "workers": a.workers,
        "probes": a.probes, "snapshot_mb": round(len(data) / 2**20, 1),
        "ready_s": round(t_ready, 2),
        "coordinator_rss_mb": round(coord_mb, 1),
        "coordinator_hwm_mb": round(coord.get("VmHWM", 0) / 1024, 1),
        "coordinator_rss_after_changes_mb": round(coord_after.get("VmRSS", 0) / 1024, 1),
        "coordinator_hwm_after_changes_mb": round(coord_after.get("VmHWM", 0) / 1024, 1),
        "worker_rss_mb": [round(w.get("VmRSS", 0) / 1024, 1) for w in workers.values()],
        "worker_hwm_mb": [round(w.get("VmHWM", 0) / 1024, 1) for w in workers.values()],
        "worker_rss_after_changes_mb": [round(w.get("VmRSS", 0) / 1024, 1)
                                        for w in workers_after.values()],
        "change_s": [round(x, 3) for x in change_s],
        "budget_mb": budget,
    }
    result["ok"] = (coord_mb < budget and max(change_s) <= 1.0
                    and coord_after.get("VmRSS", 0) / 1024 < budget)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("api", "snapshot"), default="api")
    ap.add_argument("--corefile", choices=("kubeadm", "minimal"), default="kubeadm")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=50000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--probes", type=int, default=32, help="source ports per question")
    ap.add_argument("--changes", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds after the first full answer before reading RSS")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = run(a)
    if a.json:
        print(json.dumps(r))
    else:
        print("bench_pipeline " + " ".join(f"{k}={v}" for k, v in r.items() if k != "ok")
              + (" PASS" if r["ok"] else " FAIL"))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
