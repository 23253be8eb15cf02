#!/usr/bin/env python3
"""Both roles of the fastdns image end to end, in network namespaces this script
creates and removes (deploy/build-image.sh's check 4; needs root).

    pod ns ──veth── node ns ─────────────veth── cluster ns
    glibc getent    node-local container         cluster-DNS container
                    (node-local.yaml: root,      (cluster-dns.yaml: uid 65532,
                     NET_ADMIN, the addon's       NET_BIND_SERVICE only,
                     ConfigMap, --setup-          no_new_privs, read-only root,
                     interface --setup-iptables)  kubeadm's Corefile + a snapshot)
                    upstream on 127.0.0.1:53     upstream on 127.0.0.1:53

Every container runs the image with the manifest's arguments and security
context (kube-proxy in iptables mode, the addon's `sed` applied).  Each
container starts with a network namespace of its own (``--network=none``),
which is then named and wired with fastdns/_testing/netns.py (the node-local
e2e harness), so docker and podman are driven the same way.  The Service
addresses are stand-ins inside the namespaces: kube-dns is 198.19.255.10
(bound on the node by node-local, as in iptables mode) and kube-dns-upstream
198.19.255.11 (on the cluster namespace's ``lo``, where kube-proxy would
DNAT it to the DNS pod).  The pod's resolv.conf is the kubelet's (nameserver
kube-dns, the search list, ndots:5), then 169.254.20.10.  Upstreams for
external names listen on each namespace's loopback (the resolv.conf the
containers get names 127.0.0.1), so nothing here reaches any other address.

    python3 deploy/check-image-e2e.py --engine podman --image fastdns:0.1.0 [--run-arg=ARG ...]

Prints what it checked and the containers' memory (RSS); exit 0 when every
check passed, 1 (with the containers' logs) otherwise.  Everything it made
is removed, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# The harness is plain Python (no compiled fastdns needed): loaded from its file.
_spec = importlib.util.spec_from_file_location("fastdns_netns", ROOT / "fastdns" / "_testing" / "netns.py")
netns = importlib.util.module_from_spec(_spec)
sys.modules["fastdns_netns"] = netns
_spec.loader.exec_module(netns)

LOCAL_DNS = netns.NODE_LOCAL_IP          # 169.254.20.10
KUBE_DNS = "198.19.255.10"               # kube-dns Service (10.96.0.10 in cluster-dns.yaml)
KUBE_DNS_UPSTREAM = "198.19.255.11"      # kube-dns-upstream Service
DOMAIN = "cluster.local"
EXTERNAL = "www.example.test"            # answered by the upstream only
# The cluster DNS pod's upstream (its node's resolv.conf, dnsPolicy Default): on the
# node's lo, as 127.0.0.1 is there for node-local (a pod's own loopback cannot be:
# cluster DNS listens on :53 of every address of its namespace).
CLUSTER_UPSTREAM = "198.19.255.53"

# A DNS server for external names on every address in argv (port 53): 192.0.2.1 /
# 2001:db8::1 for EXTERNAL, NXDOMAIN otherwise; stdlib only; one JSON line per
# query on stdout, with the address it came to.
UPSTREAM = textwrap.dedent(r"""
    import json, select, socket, struct, sys
    socks = {}
    for addr in sys.argv[1:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 53))
        socks[s] = addr
    print(json.dumps({"ready": True}), flush=True)
    rdata = {1: socket.inet_aton("192.0.2.1"), 28: socket.inet_pton(socket.AF_INET6, "2001:db8::1")}
    while True:
        for sock in select.select(list(socks), [], [])[0]:
            data, peer = sock.recvfrom(4096)
            if len(data) < 12:
                continue
            qid, flags = struct.unpack("!HH", data[:4])
            i, labels = 12, []
            while i < len(data) and data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace").lower())
                i += 1 + data[i]
            qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
            name = ".".join(labels) + "."
            print(json.dumps({"q": name, "t": qtype, "to": socks[sock]}), flush=True)
            answer = b""
            if name == "EXTERNAL." and qtype in rdata:
                answer = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(rdata[qtype])) + rdata[qtype]
            rcode = 0 if name == "EXTERNAL." else 3
            head = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, 1 if answer else 0, 0, 0)
            sock.sendto(head + data[12:i + 5] + answer, peer)
""").replace("EXTERNAL.", EXTERNAL + ".")

# A one-shot stdlib resolver query (A, UDP): prints "RCODE addr,addr" or "timeout".
QUERY = textwrap.dedent(r"""
    import socket, struct, sys
    server, name = sys.argv[1], sys.argv[2]
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".")) + b"\0\0\1\0\1"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
    try:
        s.sendto(q, (server, 53)); r = s.recv(4096)
    except OSError:
        print("timeout"); sys.exit()
    rcode, an = struct.unpack("!H", r[2:4])[0] & 15, struct.unpack("!H", r[6:8])[0]
    i = len(q); out = []
    for _ in range(an):
        i += 2 if r[i] & 0xc0 == 0xc0 else 0
        t, _c, _ttl, n = struct.unpack("!HHIH", r[i:i + 10]); i += 10
        if t == 1: out.append(socket.inet_ntoa(r[i:i + 4]))
        i += n
    print(rcode, ",".join(out))
""")


class Failed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)
    print(f"  ok: {what}", flush=True)


def load_manifests(eng: Engine, image: str) -> tuple[dict, dict, str, str]:
    """(cluster DNS Deployment, node-local DaemonSet, cluster Corefile, node-local Corefile),
    node-local.yaml after the addon's sed for kube-proxy in iptables mode.  The YAML is
    parsed by the image's Python (PyYAML is there), so this machine needs only the stdlib."""
    nl_text = (DEPLOY / "node-local.yaml").read_text()
    nl_text = (nl_text.replace("__PILLAR__LOCAL__DNS__", LOCAL_DNS)
               .replace("__PILLAR__DNS__DOMAIN__", DOMAIN)
               .replace("__PILLAR__DNS__SERVER__", KUBE_DNS))
    code = ("import json, sys, yaml\n"
            "print(json.dumps([[d for d in yaml.safe_load_all(t) if d] for t in json.load(sys.stdin)]))\n")
    r = subprocess.run([eng.engine, "run", "--rm", "-i", "--network=none", *eng.run_args,
                        "--entrypoint", "python3", image, "-c", code],
                       input=json.dumps([(DEPLOY / "cluster-dns.yaml").read_text(), nl_text]),
                       capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        raise Failed(f"parsing deploy/*.yaml in the image: {r.stderr.strip()}")
    cluster, nodelocal = json.loads(r.stdout)

    def one(docs: list[dict], kind: str) -> dict:
        found = [d for d in docs if d["kind"] == kind]
        if len(found) != 1:
            raise Failed(f"expected one {kind}, found {len(found)}")
        return found[0]

    dep, ds = one(cluster, "Deployment"), one(nodelocal, "DaemonSet")
    cl_core = one(cluster, "ConfigMap")["data"]["Corefile"]
    nl_core = one(nodelocal, "ConfigMap")["data"]["Corefile"]
    if "__PILLAR__" in json.dumps(ds):
        raise Failed("node-local.yaml's DaemonSet keeps a placeholder after the addon's sed")
    return dep, ds, cl_core, nl_core


class Engine:
    def __init__(self, engine: str, run_args: list[str]) -> None:
        self.engine = engine
        self.run_args = run_args
        self.names: list[str] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout,
                           check=False)
        if check and r.returncode != 0:
            raise Failed(f"{self.engine} {' '.join(args[:2])}: {r.stderr.strip() or r.returncode}")
        return r

    def run(self, name: str, args: list[str]) -> int:
        """Start a detached container with a network namespace of its own; its PID."""
        self.names.append(name)
        self("run", "-d", "--name", name, "--network=none", *self.run_args, *args)
        pid = int(self("inspect", "--format", "{{.State.Pid}}", name).stdout.strip() or 0)
        if pid <= 0:
            raise Failed(f"container {name} is not running:\n{self.logs(name)}")
        return pid

    def logs(self, name: str) -> str:
        r = self("logs", name, check=False)
        return (r.stdout + r.stderr)[-4000:]

    def running(self, name: str) -> bool:
        r = self("inspect", "--format", "{{.State.Running}}", name, check=False)
        return r.stdout.strip() == "true"

    def remove_all(self) -> None:
        # podman's rm -f stops first (10 s by default; cluster DNS has a 5 s lameduck):
        # -t 2; docker's kills at once and has no -t
        quick = ["-t", "2"] if self.engine == "podman" else []
        for name in reversed(self.names):
            self("rm", "-f", *quick, name, check=False)
        self.names.clear()


def adopt(lab: Any, pid: int, role: str) -> Any:
    """Name the network namespace of process ``pid`` (a container's) for the harness."""
    name = f"{netns.NAME_PREFIX}{os.getpid()}-{role}"
    r = subprocess.run(["ip", "netns", "attach", name, str(pid)], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise Failed(f"ip netns attach {name} {pid}: {r.stderr.strip()}")
    ns = netns.Namespace(name, role)
    lab.namespaces.append(ns)   # removed (name and /etc/netns dir) when the lab closes
    return ns


def substitute(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion in a container's args."""
    out = []
    for a in args:
        for k, v in env.items():
            a = a.replace(f"$({k})", v)
        out.append(a)
    return out


def security_flags(pod_spec: dict, c: dict) -> list[str]:
    ctx = {**pod_spec.get("securityContext", {}), **c.get("securityContext", {})}
    flags = []
    if "runAsUser" in ctx:
        flags.append(f"--user={ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}")
    caps = ctx.get("capabilities", {})
    flags += [f"--cap-drop={x}" for x in caps.get("drop", [])]
    flags += [f"--cap-add={x}" for x in caps.get("add", [])]
    if ctx.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    if ctx.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    flags += [f"--tmpfs={m['mountPath']}" for m in c.get("volumeMounts", [])
              if "emptyDir" in vols.get(m["name"], {})]
    return flags


def rss_report(label: str, pid: int) -> str:
    """VmRSS of the container's main process and its descendants, in MB."""
    def status(p: int) -> dict[str, str]:
        try:
            return dict(l.split(":\t", 1) for l in Path(f"/proc/{p}/status").read_text().splitlines()
                        if ":\t" in l)
        except OSError:
            return {}

    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            ppid = status(int(d.name)).get("PPid", "0").strip()
            children.setdefault(int(ppid), []).append(int(d.name))
    # setpriv exec'd the server: pid is the coordinator; its children are the workers
    workers = sorted(children.get(pid, []))
    mb = lambda p: int(status(p).get("VmRSS", "0 kB").split()[0]) / 1024
    return (f"{label}: coordinator {mb(pid):.0f} MB, " +
            ", ".join(f"worker {mb(w):.0f} MB" for w in workers))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("docker", "podman"), required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--run-arg", action="append", default=[],
                    help="extra argument for every `ENGINE run` (e.g. --run-arg=--cgroups=no-conmon)")
    a = ap.parse_args(argv)
    ok, reason = netns.netns_available()
    if not ok:
        print(f"check-image-e2e: network namespaces unavailable: {reason}", file=sys.stderr)
        return 1
    for tool in ("getent", a.engine):
        if shutil.which(tool) is None:
            print(f"check-image-e2e: '{tool}' is not installed", file=sys.stderr)
            return 1

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    eng = Engine(a.engine, a.run_arg)
    lab = netns.NetnsLab()
    tmp = Path(tempfile.mkdtemp(prefix="fastdns-e2e-"))
    prefix = f"fastdns-e2e-{os.getpid()}"
    try:
        run(a, eng, lab, tmp, prefix)
        print("check-image-e2e: every check passed")
        return 0
    except (Failed, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"check-image-e2e: FAILED: {exc}", file=sys.stderr)
        for name in eng.names:
            print(f"--- {a.engine} logs {name}:\n{eng.logs(name)}", file=sys.stderr)
        return 1
    finally:
        eng.remove_all()     # first: the namespaces' processes are the containers'
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run(a: argparse.Namespace, eng: Engine, lab: Any, tmp: Path, prefix: str) -> None:
    dep, ds, cl_core, nl_core = load_manifests(eng, a.image)
    tmp.chmod(0o755)
    (tmp / "resolv.conf").write_text("nameserver 127.0.0.1\n")     # the node's loopback upstream
    (tmp / "resolv.conf.cluster").write_text(f"nameserver {CLUSTER_UPSTREAM}\n")
    (tmp / "xtables.lock").touch()

    # -- cluster DNS: cluster-dns.yaml's Deployment, its ConfigMap + the demo snapshot
    cl_spec = dep["spec"]["template"]["spec"]
    cl_c = cl_spec["containers"][0]
    marker = "kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
    if marker not in cl_core:
        raise Failed("cluster-dns.yaml's Corefile has no kubeadm kubernetes block")
    cl_dir = tmp / "cluster-config"
    cl_dir.mkdir()
    (cl_dir / "Corefile").write_text(cl_core.replace(marker, marker + "       snapshot /etc/coredns/cluster.yaml\n"))
    shutil.copy(ROOT / "fastdns" / "demo" / "cluster.yaml", cl_dir / "cluster.yaml")
    for f in cl_dir.iterdir():
        f.chmod(0o644)
    cl_dir.chmod(0o755)
    mount = next(m["mountPath"] for m in cl_c["volumeMounts"] if m["name"] == "config-volume")
    workers = str(cl_c["resources"]["limits"]["cpu"])
    cl_args = substitute(cl_c["args"], {"FASTDNS_WORKERS": workers})
    cl_name = f"{prefix}-cluster-dns"
    cl_pid = eng.run(cl_name, [
        *security_flags(cl_spec, cl_c), "--sysctl", "net.ipv4.ip_unprivileged_port_start=1024",
        "-v", f"{cl_dir}:{mount}:ro", "-v", f"{tmp / 'resolv.conf.cluster'}:/etc/resolv.conf:ro",
        "--entrypoint", "setpriv", a.image, "--inh-caps=-all", "--ambient-caps=-all", "--",
        *(cl_c.get("command") or ["fastdns"]), *cl_args])
    print(f"  cluster DNS: {' '.join(cl_args)} ({' '.join(security_flags(cl_spec, cl_c))})")
    cluster = adopt(lab, cl_pid, "cluster")

    # -- node-local: node-local.yaml's DaemonSet (after the sed), its ConfigMap
    nl_spec = ds["spec"]["template"]["spec"]
    nl_c = nl_spec["containers"][0]
    nl_dir = tmp / "node-local-config"
    nl_dir.mkdir()
    item = nl_spec["volumes"][[v["name"] for v in nl_spec["volumes"]].index("config-volume")]["configMap"]["items"][0]
    (nl_dir / item["path"]).write_text(nl_core)
    nl_mount = next(m["mountPath"] for m in nl_c["volumeMounts"] if m["name"] == "config-volume")
    lock = next(m["mountPath"] for m in nl_c["volumeMounts"] if m["name"] == "xtables-lock")
    nl_args = substitute(nl_c["args"], {"FASTDNS_WORKERS": str(nl_c["resources"]["limits"]["cpu"])})
    nl_name = f"{prefix}-node-local"
    nl_pid = eng.run(nl_name, [
        *security_flags(nl_spec, nl_c),
        "-e", f"KUBE_DNS_UPSTREAM_SERVICE_HOST={KUBE_DNS_UPSTREAM}",   # the kubelet's, for -upstreamsvc
        "-v", f"{nl_dir}:{nl_mount}:ro", "-v", f"{tmp / 'xtables.lock'}:{lock}",
        "-v", f"{tmp / 'resolv.conf'}:/etc/resolv.conf:ro",           # dnsPolicy Default: the node's
        a.image, *nl_args])
    print(f"  node-local: {' '.join(nl_args)} ({' '.join(security_flags(nl_spec, nl_c))})")
    node = adopt(lab, nl_pid, "node")

    # -- wiring: pod <-> node <-> cluster, routes to the Service stand-ins
    pod = lab.namespace("pod")
    pod_link = lab.link(pod, node, a_if="eth0", b_if="vethpod")
    cl_link = lab.link(node, cluster, a_if="vethcluster", b_if="eth0")
    for ip in (LOCAL_DNS, KUBE_DNS):
        pod.add_route(f"{ip}/32", via=pod_link.b_ip)
    cluster.add_address(f"{KUBE_DNS_UPSTREAM}/32")
    node.add_route(f"{KUBE_DNS_UPSTREAM}/32", via=cl_link.b_ip)
    search = [f"default.svc.{DOMAIN}", f"svc.{DOMAIN}", DOMAIN]
    pod.write_resolv_conf([KUBE_DNS], search=search, options=["ndots:5"])
    pod.write_etc("nsswitch.conf", "hosts: files dns\n")
    pod.write_etc("hosts", "127.0.0.1 localhost\n::1 localhost\n")
    for ns in (node, cluster):          # commands run there never see the machine's resolver
        ns.write_etc("resolv.conf", "nameserver 127.0.0.1\n")
    node.add_address(f"{CLUSTER_UPSTREAM}/32")
    cluster.add_route(f"{CLUSTER_UPSTREAM}/32", via=cl_link.a_ip)
    up = node.popen([sys.executable, "-u", "-c", UPSTREAM, "127.0.0.1", CLUSTER_UPSTREAM],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if '"ready"' not in up.stdout.readline():
        raise Failed(f"the upstream did not start: {up.stderr.read() if up.poll() is not None else ''}")
    os.set_blocking(up.stdout.fileno(), False)
    up_log: list[dict] = []

    def seen(to: str) -> list[dict]:
        while line := up.stdout.readline():
            up_log.append(json.loads(line))
        return [x for x in up_log if x["to"] == to]

    def query(ns: Any, server: str, name: str) -> str:
        return ns.run([sys.executable, "-c", QUERY, server, name], check=False, timeout=20).stdout.strip()

    def wait(pred: Any, what: str, timeout: float = 60) -> None:
        if not netns.wait_for(pred, timeout, 0.5):
            raise Failed(f"{what} (waited {timeout:.0f} s)")

    def both_running() -> bool:
        for n in (cl_name, nl_name):
            if not eng.running(n):
                raise Failed(f"container {n} exited")
        return True

    nginx = f"nginx-svc.default.svc.{DOMAIN}"
    wait(lambda: both_running() and query(cluster, KUBE_DNS_UPSTREAM, nginx) == "0 10.96.0.50",
         "the cluster-DNS container answers on kube-dns-upstream's address")
    print("  ok: cluster DNS answers nginx-svc on kube-dns-upstream's address")
    wait(lambda: both_running() and query(pod, LOCAL_DNS, nginx) == "0 10.96.0.50",
         "the node-local container answers the pod on 169.254.20.10")
    print("  ok: node-local answers the pod on 169.254.20.10")

    # node-local set up its interface and node-cache's iptables rules in the node namespace
    def local_addrs() -> dict[str, str]:   # address -> interface, for the two --localip ones
        out = {}
        for line in node.ip("-o", "-4", "addr", "show").splitlines():
            f = line.split()
            if f[3].split("/")[0] in (LOCAL_DNS, KUBE_DNS):
                out[f[3].split("/")[0]] = f[1]
        return out

    on = local_addrs()
    check(set(on) == {LOCAL_DNS, KUBE_DNS},
          f"--setup-interface put {LOCAL_DNS} and {KUBE_DNS} on {', '.join(sorted(set(on.values()))) or 'nothing'}"
          + (" (this kernel has no dummy driver: lo, as node-cache does)" if set(on.values()) == {"lo"} else ""))
    rules = eng("exec", nl_name, "iptables-save").stdout
    n_rules = rules.count("NodeLocal DNS Cache")
    check(n_rules >= 16, f"{n_rules} NOTRACK/ACCEPT rules for both addresses (iptables-save in the container)")

    def getent(*args: str) -> list[str]:
        r = pod.run(["getent", *args], check=False, timeout=60)
        if r.returncode != 0:
            raise Failed(f"getent {' '.join(args)} in the pod: exit {r.returncode} {r.stderr.strip()}")
        return r.stdout.split()

    for nameserver in (KUBE_DNS, LOCAL_DNS):
        pod.write_resolv_conf([nameserver], search=search, options=["ndots:5"])
        out = getent("hosts", "nginx-svc")
        check(out[:2] == ["10.96.0.50", nginx], f"pod (nameserver {nameserver}): getent hosts nginx-svc -> {' '.join(out[:2])}")
        out = getent("hosts", "nginx-svc.default")
        check(out[:2] == ["10.96.0.50", nginx], f"pod: getent hosts nginx-svc.default -> {' '.join(out[:2])}")
        out = getent("ahosts", EXTERNAL)
        check("192.0.2.1" in out, f"pod: getent ahosts {EXTERNAL} -> {' '.join(sorted(set(out[::3])))}")
    out = getent("hosts", "10.96.0.50")
    check(out[:2] == ["10.96.0.50", nginx], f"pod: getent hosts 10.96.0.50 (PTR) -> {out[1] if len(out) > 1 else out}")
    ext = [x["t"] for x in seen("127.0.0.1") if x["q"] == EXTERNAL + "."]
    check(ext.count(1) == 1 and ext.count(28) <= 1
          and not [x for x in seen(CLUSTER_UPSTREAM) if x["q"] == EXTERNAL + "."],
          f"{EXTERNAL} reached node-local's upstream 127.0.0.1 once per type for 2 lookups"
          f" (cached) and never cluster DNS's")
    check(not [x for x in seen("127.0.0.1") + seen(CLUSTER_UPSTREAM) if x["q"].endswith(f".{DOMAIN}.")],
          f"no {DOMAIN} name reached an upstream")

    # the manifests' probes: the kubelet asks from the node
    def http(ns: Any, url: str) -> str:
        code = ("import sys, urllib.request\n"
                "try:\n print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
                "except Exception as e:\n"
                " print(getattr(e, 'code', ''), e.read().decode()[:200] if hasattr(e, 'read') else e)\n")
        return ns.run([sys.executable, "-c", code, url], check=False).stdout.strip()

    nl_probe = nl_c["livenessProbe"]["httpGet"]
    url = f"http://{nl_probe['host']}:{nl_probe['port']}{nl_probe['path']}"
    got = http(node, url)
    check(got == "200", f"node-local liveness probe {url}: {got}")
    ports = {p["name"]: p["containerPort"] for p in cl_c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        g = cl_c[probe]["httpGet"]
        url = f"http://{cl_link.b_ip}:{ports.get(g['port'], g['port'])}{g['path']}"
        # the kubelet probes every periodSeconds until it succeeds: so does this, for 30 s
        got = ""

        def probe_ok(url: str = url) -> bool:
            nonlocal got
            got = http(node, url)
            return got == "200"

        netns.wait_for(probe_ok, 30, 1.0)
        check(got == "200", f"cluster DNS {probe} {url}: {got}")

    print("  memory (RSS): " + rss_report("cluster DNS", cl_pid) + "; " + rss_report("node-local", nl_pid))

    # SIGTERM: node-local removes its interface and rules and exits 0
    eng("stop", "-t", "30", nl_name, timeout=60)
    code = eng("inspect", "--format", "{{.State.ExitCode}}", nl_name).stdout.strip()
    check(code == "0", f"node-local exits 0 on SIGTERM (exit {code})")
    check("nodelocaldns" not in node.ip("-o", "link", "show") and not local_addrs(),
          "its interface and addresses are gone after it")
    if shutil.which("iptables-save"):
        left = node.run(["iptables-save"], check=False).stdout.count("NodeLocal DNS Cache")
        check(left == 0, f"its iptables rules are gone after it ({left} left)")
    logs = eng.logs(nl_name) + eng.logs(cl_name)
    check("Traceback" not in logs, "no Traceback in either container's log")


if __name__ == "__main__":
    sys.exit(main())
