"""Node-local cache end to end (issue 7), in network namespaces the test creates.

    pod ns ──veth── node ns (node-local fastdns on 169.254.20.10, the addon's Corefile)
                      ├──veth── cluster ns  (cluster fastdns serving a snapshot)
                      └──veth── upstream ns (a logging DNS server for external names)

The pod's glibc resolver (``getent``) and ``dig`` ask 169.254.20.10 with the
pod's resolv.conf (search list, ndots:5).  Only addresses inside these
namespaces are used; everything is removed afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from fastdns._testing.netns import NODE_LOCAL_IP, wait_for

ROOT = Path(__file__).resolve().parents[2]

UPSTREAM = textwrap.dedent("""
    import json, socket, sys
    import dns.message, dns.rcode, dns.rrset
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((sys.argv[1], 53))
    print(json.dumps({"ready": True}), flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        q = dns.message.from_wire(data)
        name, qtype = q.question[0].name.to_text().lower(), int(q.question[0].rdtype)
        print(json.dumps({"q": name, "t": qtype}), flush=True)
        r = dns.message.make_response(q)
        r.flags |= 0x0080
        if name == "www.example.test." and qtype in (1, 28):
            r.answer.append(dns.rrset.from_text(name, 300, "IN", "A" if qtype == 1 else "AAAA",
                                                "192.0.2.1" if qtype == 1 else "2001:db8::1"))
        elif name != "www.example.test.":
            r.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(r.to_wire(), peer)
""")

SNAPSHOT = (ROOT / "fastdns" / "demo" / "cluster.yaml").read_text()


def addon_corefile() -> str:
    for doc in yaml.safe_load_all((ROOT / "deploy" / "node-local.yaml").read_text()):
        if doc and doc.get("kind") == "ConfigMap" and "Corefile" in doc.get("data", {}):
            return doc["data"]["Corefile"]
    raise AssertionError("deploy/node-local.yaml has no Corefile ConfigMap")


class LineLog:
    """Collects JSON lines a child prints, in a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.lines.append(obj)

    def count(self, name: str, qtype: int) -> int:
        with self.lock:
            return sum(1 for x in self.lines if x.get("q") == name and x.get("t") == qtype)

    def ready(self) -> bool:
        with self.lock:
            return any(x.get("ready") for x in self.lines)


def serve(ns, args: list[str], tmp: Path, name: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "w")
    return ns.popen([sys.executable, "-m", "fastdns", "serve", "--workers", "2",
                     "--log-level", "warning", *args], stdout=log, stderr=subprocess.STDOUT)


def dig(ns, server: str, *args: str, tcp: bool = False) -> str:
    cmd = ["dig", f"@{server}", "+time=5", "+tries=1", *args] + (["+tcp"] if tcp else [])
    return ns.run(cmd, check=False).stdout


def answers_from(ns, server: str, name: str) -> bool:
    return "status: NOERROR" in dig(ns, server, name)


@pytest.fixture
def cluster(nodelocal_topology, tmp_path, request):
    """Cluster DNS (fastdns serving the demo snapshot) and the upstream, both behind the node.

    With ``@pytest.mark.serve_stale`` cluster answers carry TTL 2 and the node-local
    cache for the cluster domain has ``serve_stale``.
    """
    stale = request.node.get_closest_marker("serve_stale") is not None
    if shutil.which("dig") is None or shutil.which("getent") is None:
        pytest.skip("dig and getent are needed (bind9-dnsutils, libc-bin)")
    topo = nodelocal_topology
    cl_ns, cl_link = topo.attach("cluster")
    up_ns, up_link = topo.attach("upstream")
    (tmp_path / "cluster.yaml").write_text(SNAPSHOT)
    cl_core = tmp_path / "Corefile.cluster"
    cl_core.write_text(textwrap.dedent(f"""\
        .:53 {{
            bind {cl_link.b_ip}
            kubernetes cluster.local in-addr.arpa ip6.arpa {{
                snapshot {tmp_path / 'cluster.yaml'}
                pods insecure
                fallthrough in-addr.arpa ip6.arpa
                ttl {2 if stale else 30}
            }}
        }}
        """))
    up = up_ns.popen([sys.executable, "-c", UPSTREAM, up_link.b_ip], stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, text=True)
    uplog = LineLog(up)
    assert wait_for(uplog.ready, 10), "upstream did not start"

    def start_cluster() -> subprocess.Popen:
        p = serve(cl_ns, ["--conf", str(cl_core)], tmp_path, "cluster")
        assert wait_for(lambda: answers_from(cl_ns, cl_link.b_ip, "nginx-svc.default.svc.cluster.local"),
                        20), (tmp_path / "cluster.log").read_text()
        return p

    state = {"cluster": start_cluster()}
    nl_core = tmp_path / "Corefile.nodelocal"
    corefile = addon_corefile()                   # placeholders as the addon ships them
    if stale:
        corefile = corefile.replace("denial 9984 5\n", "denial 9984 5\n            serve_stale 1h\n", 1)
        assert "serve_stale" in corefile
    nl_core.write_text(corefile)
    nl = serve(topo.node, ["--conf", str(nl_core), "--localip", NODE_LOCAL_IP,
                           "--dns-server", NODE_LOCAL_IP, "--cluster-dns", cl_link.b_ip,
                           "--upstream-servers", up_link.b_ip], tmp_path, "nodelocal")
    assert wait_for(lambda: answers_from(topo.node, NODE_LOCAL_IP, "nginx-svc.default.svc.cluster.local"),
                    20), (tmp_path / "nodelocal.log").read_text()
    yield {"topo": topo, "cl_ns": cl_ns, "cl_ip": cl_link.b_ip, "node_side": cl_link.a_ip,
           "uplog": uplog, "state": state, "start_cluster": start_cluster, "nodelocal": nl,
           "tmp": tmp_path}
    topo.node.stop(nl)
    if state["cluster"] is not None:
        cl_ns.stop(state["cluster"])
    up_ns.stop(up)


def getent(topo, *args: str) -> list[str]:
    r = topo.pod.run(["getent", *args], check=False)
    assert r.returncode == 0, f"getent {' '.join(args)} failed: {r.stdout} {r.stderr}"
    return r.stdout.split()


def test_pod_resolves_through_node_local(cluster):
    topo = cluster["topo"]
    # glibc with the pod's search list: a short name, then a namespace-qualified one
    assert getent(topo, "hosts", "nginx-svc")[:2] == ["10.96.0.50", "nginx-svc.default.svc.cluster.local"]
    assert getent(topo, "hosts", "nginx-svc.default")[:2] == \
        ["10.96.0.50", "nginx-svc.default.svc.cluster.local"]
    # an external name walks the search list (NXDOMAIN from cluster DNS) then reaches the upstream
    out = getent(topo, "ahosts", "www.example.test")
    assert "192.0.2.1" in out
    # dig from the pod, UDP and TCP, and a headless service
    assert dig(topo.pod, NODE_LOCAL_IP, "+short", "nginx-svc.default.svc.cluster.local").split() == ["10.96.0.50"]
    assert dig(topo.pod, NODE_LOCAL_IP, "+short", "nginx-svc.default.svc.cluster.local", tcp=True).split() \
        == ["10.96.0.50"]
    assert sorted(dig(topo.pod, NODE_LOCAL_IP, "+short", "web.default.svc.cluster.local").split()) == \
        ["10.244.1.20", "10.244.2.21"]
    assert dig(topo.pod, NODE_LOCAL_IP, "+short", "-x", "10.96.0.50").split() == \
        ["nginx-svc.default.svc.cluster.local."]


def test_external_name_reaches_upstream_once_while_cached(cluster):
    topo, uplog = cluster["topo"], cluster["uplog"]
    for _ in range(5):
        assert "192.0.2.1" in getent(topo, "ahosts", "www.example.test")
    assert uplog.count("www.example.test.", 1) == 1
    assert uplog.count("www.example.test.", 28) == 1
    # cluster names never go to the upstream
    assert uplog.count("nginx-svc.default.svc.cluster.local.", 1) == 0


def test_cluster_dns_sees_node_local_over_tcp(cluster):
    topo = cluster["topo"]
    getent(topo, "hosts", "web.default.svc.cluster.local")
    ss = cluster["cl_ns"].run(["ss", "-Htn", "state", "established", "( sport = :53 )"]).stdout
    peers = re.findall(r"\s(\S+):\d+\s*$", ss, re.M)
    assert cluster["node_side"] in peers, ss
    udp = cluster["cl_ns"].run(["ss", "-Hun", "( sport = :53 )"]).stdout
    assert cluster["node_side"] not in udp


def test_cluster_dns_down_then_back(cluster):
    topo, state = cluster["topo"], cluster["state"]
    assert getent(topo, "hosts", "nginx-svc")[0] == "10.96.0.50"          # now cached (TTL 30)
    cluster["cl_ns"].stop(state["cluster"])
    state["cluster"] = None
    # cached names keep answering while cluster DNS is down
    assert getent(topo, "hosts", "nginx-svc")[0] == "10.96.0.50"
    assert dig(topo.pod, NODE_LOCAL_IP, "+short", "nginx-svc.default.svc.cluster.local").split() == \
        ["10.96.0.50"]
    # an uncached cluster name fails (SERVFAIL), and recovers once cluster DNS is back,
    # without restarting node-local
    assert "SERVFAIL" in dig(topo.pod, NODE_LOCAL_IP, "web-0.web.default.svc.cluster.local")
    state["cluster"] = cluster["start_cluster"]()
    assert cluster["nodelocal"].poll() is None
    assert wait_for(lambda: dig(topo.pod, NODE_LOCAL_IP, "+short",
                                "web-0.web.default.svc.cluster.local").split() == ["10.244.1.20"], 20)


@pytest.mark.serve_stale
def test_serve_stale_while_cluster_dns_is_down(cluster):
    topo, state = cluster["topo"], cluster["state"]
    assert getent(topo, "hosts", "nginx-svc")[0] == "10.96.0.50"
    cluster["cl_ns"].stop(state["cluster"])
    state["cluster"] = None
    time.sleep(6.5)        # the cached answer (TTL 2, raised to the cache MINTTL 5) has expired
    out = dig(topo.pod, NODE_LOCAL_IP, "nginx-svc.default.svc.cluster.local")
    assert "status: NOERROR" in out and "10.96.0.50" in out, out
