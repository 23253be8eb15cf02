"""The e2e topology works: a pod namespace's glibc and dig reach 169.254.20.10 in the node namespace.

A tiny dnspython responder stands where node-local fastdns will run; it logs
every question, so the test sees the pod's search list being walked exactly
as glibc does with ``ndots:5``.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest

from fastdns._testing.netns import NODE_LOCAL_IP, POD_SEARCH, list_namespaces

RESPONDER = textwrap.dedent("""
    import json, socket, sys
    import dns.message, dns.rcode, dns.rrset
    host, records = sys.argv[1], json.loads(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 53))
    print(json.dumps({"ready": True}), flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        q = dns.message.from_wire(data)
        name, qtype = q.question[0].name.to_text().lower(), q.question[0].rdtype
        print(json.dumps({"q": name, "t": int(qtype), "from": peer[0]}), flush=True)
        r = dns.message.make_response(q)
        r.flags |= 0x0400  # AA
        if name in records:
            if qtype == 1:
                r.answer.append(dns.rrset.from_text(name, 30, "IN", "A", records[name]))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(r.to_wire(), peer)
""")

RECORDS = {
    "nginx-svc.default.svc.cluster.local.": "192.0.2.80",
    "www.example.test.": "192.0.2.1",
}


@pytest.fixture
def responder(nodelocal_topology):
    """The tiny responder on 169.254.20.10:53 in the node namespace; yields a log reader."""
    import subprocess

    proc = nodelocal_topology.node.popen([sys.executable, "-c", RESPONDER, NODE_LOCAL_IP, json.dumps(RECORDS)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert json.loads(first or "{}").get("ready"), f"responder did not start: {proc.stderr.read()}"
    log: list[dict] = []

    def read_log(n: int) -> list[dict]:
        while len(log) < n:
            line = proc.stdout.readline()
            if not line:
                break
            log.append(json.loads(line))
        return log[:n]

    yield read_log
    nodelocal_topology.node.stop(proc)


def test_pod_resolv_conf_and_route_reach_node_local_ip(nodelocal_topology, responder):
    topo = nodelocal_topology
    # the address is on the node as --setup-interface puts it (lo on a kernel without dummy)
    assert f"inet {NODE_LOCAL_IP}/32" in topo.node.ip("-o", "addr", "show", "dev", topo.interface.link)
    assert (topo.pod.etc_dir / "resolv.conf").read_text() == (
        f"nameserver {NODE_LOCAL_IP}\nsearch {' '.join(POD_SEARCH)}\noptions ndots:5\n")

    # glibc: a short name is tried with the first search suffix (ndots:5)
    r = topo.pod.run(["getent", "hosts", "nginx-svc"], check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["192.0.2.80", "nginx-svc.default.svc.cluster.local"]
    first = responder(1)[0]
    assert first["q"] == "nginx-svc.default.svc.cluster.local."
    assert first["from"] == topo.link.a_ip  # the pod's own address over the veth

    if shutil.which("dig"):
        r = topo.pod.run(["dig", f"@{NODE_LOCAL_IP}", "+short", "+time=2", "+tries=1",
                          "nginx-svc.default.svc.cluster.local", "A"])
        assert r.stdout.strip() == "192.0.2.80"


def test_pod_external_name_walks_the_search_list(nodelocal_topology, responder):
    topo = nodelocal_topology
    r = topo.pod.run(["getent", "ahostsv4", "www.example.test"], check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "192.0.2.1"
    names = [e["q"] for e in responder(4)]
    assert names == [f"www.example.test.{s}." for s in POD_SEARCH] + ["www.example.test."]


def test_topology_leaves_nothing_behind(netns_lab):
    from fastdns._testing.netns import build_nodelocal_topology

    topo = build_nodelocal_topology(netns_lab)
    names = [topo.pod.name, topo.node.name]
    etc = topo.pod.etc_dir
    proc = topo.node.popen(["sleep", "60"])
    assert set(names) <= set(list_namespaces())
    netns_lab.close()
    assert not set(names) & set(list_namespaces())
    assert not etc.exists()
    assert proc.poll() is not None


ECHO = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 53))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(512)
        s.sendto(data, peer)
""")

SEND = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    try:
        s.sendto(b"ping", (sys.argv[1], 53))
        print(s.recv(512).decode())
    except OSError as exc:
        print(type(exc).__name__, exc.errno)
""")


def test_attached_namespace_reachable_from_node_only(nodelocal_topology):
    import subprocess

    topo = nodelocal_topology
    cluster, link = topo.attach("cluster")
    assert link.a is topo.node and link.b is cluster
    echo = cluster.popen([sys.executable, "-c", ECHO, link.b_ip], stdout=subprocess.PIPE, text=True)
    assert echo.stdout.readline().strip() == "ready"
    assert topo.node.run([sys.executable, "-c", SEND, link.b_ip]).stdout.strip() == "ping"
    # the pod has a route to the node-local IP only
    out = topo.pod.run([sys.executable, "-c", SEND, link.b_ip]).stdout.strip()
    assert out.startswith("OSError") and out.endswith(" 101"), out  # ENETUNREACH
