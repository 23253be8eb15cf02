"""Network namespaces for end-to-end tests, with guaranteed cleanup.

A :class:`NetnsLab` creates named namespaces (``fdt-<pid>-<n>-<role>``),
veth links between them, ``/etc/netns/NAME/*`` files (``ip netns exec``
bind-mounts them over ``/etc``, so ``resolv.conf`` written there is what
glibc reads inside), and processes inside them.  Everything is removed by
:meth:`NetnsLab.close` (also on ``with`` exit, at interpreter exit, and by
the pytest fixtures in ``tests/e2e/conftest.py``); namespaces left by a
test run that was killed are removed by :func:`cleanup_stale` on the next run.

Addresses: only ones that exist inside the test's namespaces.  The node-local
IP ``169.254.20.10`` lives on the node namespace's ``lo``; veth links get a
/30 each from ``198.18.0.0/15`` (RFC 2544 benchmarking range), assigned
only inside the namespaces.  The host's own interfaces, routes and iptables
are never touched.

Example::

    with NetnsLab() as lab:
        pod, node = lab.namespace("pod"), lab.namespace("node")
        link = lab.link(pod, node)                 # pod 198.18.0.1 <-> node 198.18.0.2
        node.add_address("169.254.20.10/32")        # on node's lo
        pod.add_route("169.254.20.10/32", via=link.b_ip)
        pod.write_resolv_conf(["169.254.20.10"], search=["cluster.local"], options=["ndots:5"])
        srv = node.popen([sys.executable, "server.py"])
        out = pod.run(["getent", "hosts", "name"]).stdout
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

__all__ = [
    "ETC_NETNS",
    "LINK_SUPERNET",
    "NAME_PREFIX",
    "NODE_LOCAL_IP",
    "POD_OPTIONS",
    "POD_SEARCH",
    "Link",
    "Namespace",
    "NetnsLab",
    "NodeLocalTopology",
    "build_nodelocal_topology",
    "cleanup_stale",
    "list_namespaces",
    "netns_available",
    "wait_for",
]

NAME_PREFIX = "fdt-"
NODE_LOCAL_IP = "169.254.20.10"
LINK_SUPERNET = ipaddress.ip_network("198.18.0.0/15")
ETC_NETNS = Path("/etc/netns")

_counter = itertools.count(1)
_link_counter = itertools.count(0)
_lock = threading.Lock()
_live_labs: set[NetnsLab] = set()
_available: tuple[bool, str] | None = None
_created_etc_netns = False  # /etc/netns made by us: removed again once empty


def _ip(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def netns_available() -> tuple[bool, str]:
    """Whether namespaces and veth links can be made here; ``(False, reason)`` if not."""
    global _available
    if _available is not None:
        return _available
    if shutil.which("ip") is None:
        _available = (False, "needs the 'ip' command (iproute2)")
        return _available
    if os.geteuid() != 0:
        _available = (False, "needs root to create network namespaces")
        return _available
    name = f"{NAME_PREFIX}{os.getpid()}-probe"
    try:
        r = _ip("netns", "add", name, check=False)
        if r.returncode != 0:
            _available = (False, f"cannot create a network namespace: {r.stderr.strip()}")
            return _available
        r = _ip("-n", name, "link", "add", "fdtp0", "type", "veth", "peer", "name", "fdtp1", check=False)
        if r.returncode != 0:
            _available = (False, f"cannot create a veth pair in a namespace: {r.stderr.strip()}")
            return _available
        _available = (True, "")
        return _available
    finally:
        _ip("netns", "del", name, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Remove ``fdt-<pid>-*`` namespaces and /etc/netns dirs whose creating process is gone."""
    removed = []
    names = set(list_namespaces())
    if ETC_NETNS.is_dir():
        names.update(p.name for p in ETC_NETNS.iterdir())
    for name in sorted(names):
        if not name.startswith(NAME_PREFIX):
            continue
        pid_part = name[len(NAME_PREFIX):].split("-", 1)[0]
        if not pid_part.isdigit() or _pid_alive(int(pid_part)):
            continue
        _kill_namespace_pids(name)
        _ip("netns", "del", name, check=False)
        shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
        removed.append(name)
    return removed


def _kill_namespace_pids(name: str) -> None:
    r = _ip("netns", "pids", name, check=False)
    for tok in r.stdout.split():
        if tok.isdigit() and int(tok) != os.getpid():
            try:
                os.kill(int(tok), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


class Namespace:
    """One named network namespace made by a :class:`NetnsLab` (``lo`` is up)."""

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.processes: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    @property
    def etc_dir(self) -> Path:
        """``/etc/netns/NAME``: files here replace ``/etc/*`` for commands run inside."""
        return ETC_NETNS / self.name

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with ``ip netns exec NAME``."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 30,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside and wait (text output captured unless redirected)."""
        kwargs.setdefault("capture_output", "stdout" not in kwargs and "stderr" not in kwargs)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(argv), check=check, timeout=timeout, **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside; it is stopped (by PID) when the lab closes.

        ``ip netns exec`` execs the command itself, so ``proc.pid`` is the
        command's PID.
        """
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self.processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
        """SIGTERM ``proc``, SIGKILL after ``timeout`` seconds, and reap it."""
        _stop_process(proc, timeout)

    def write_etc(self, filename: str, text: str) -> Path:
        """Write ``/etc/netns/NAME/filename`` (seen as ``/etc/filename`` inside)."""
        global _created_etc_netns
        if not ETC_NETNS.exists():
            _created_etc_netns = True
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        path = self.etc_dir / filename
        path.write_text(text)
        return path

    def write_resolv_conf(self, nameservers: Iterable[str], search: Iterable[str] = (),
                          options: Iterable[str] = ()) -> Path:
        """The namespace's ``resolv.conf`` (what glibc's resolver reads inside)."""
        lines = [f"nameserver {ns}" for ns in nameservers]
        search = list(search)
        options = list(options)
        if search:
            lines.append("search " + " ".join(search))
        if options:
            lines.append("options " + " ".join(options))
        return self.write_etc("resolv.conf", "\n".join(lines) + "\n")

    def add_address(self, cidr: str, dev: str = "lo") -> None:
        """Add ``cidr`` (e.g. ``169.254.20.10/32``) to ``dev`` inside."""
        _ip("-n", self.name, "addr", "add", cidr, "dev", dev)

    def add_route(self, dest: str, via: str) -> None:
        """Route ``dest`` (e.g. ``169.254.20.10/32``) via a neighbour's address."""
        _ip("-n", self.name, "route", "add", dest, "via", via)

    def ip(self, *args: str) -> str:
        """``ip -n NAME ARGS``' output (raises RuntimeError on failure)."""
        return _ip("-n", self.name, *args).stdout

    def _close(self) -> list[str]:
        errors = []
        for proc in reversed(self.processes):
            try:
                _stop_process(proc)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up the rest
                errors.append(f"stopping pid {proc.pid}: {exc}")
        self.processes.clear()
        _kill_namespace_pids(self.name)  # descendants left behind by what we started
        r = _ip("netns", "del", self.name, check=False)
        if r.returncode != 0 and self.name in list_namespaces():
            errors.append(f"ip netns del {self.name}: {r.stderr.strip()}")
        shutil.rmtree(self.etc_dir, ignore_errors=True)
        return errors


@dataclass(frozen=True)
class Link:
    """A veth pair: ``a_if`` (``a_ip``) in ``a``, ``b_if`` (``b_ip``) in ``b``, a /30 between."""

    a: Namespace
    b: Namespace
    a_if: str
    b_if: str
    a_ip: str
    b_ip: str
    prefixlen: int


class NetnsLab:
    """A set of namespaces and links torn down together (context manager)."""

    def __init__(self, clean_stale: bool = True) -> None:
        ok, reason = netns_available()
        if not ok:
            raise RuntimeError(f"network namespaces unavailable: {reason}")
        if clean_stale:
            cleanup_stale()
        self.namespaces: list[Namespace] = []
        self.links: list[Link] = []
        self.closed = False
        with _lock:
            _live_labs.add(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace(self, role: str = "ns") -> Namespace:
        """A new namespace named ``fdt-<pid>-<n>-<role>`` with ``lo`` up."""
        name = f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}-{role}"
        _ip("netns", "add", name)
        ns = Namespace(name, role)
        self.namespaces.append(ns)
        _ip("-n", name, "link", "set", "lo", "up")
        return ns

    def link(self, a: Namespace, b: Namespace, a_if: str | None = None,
             b_if: str | None = None) -> Link:
        """A veth pair between ``a`` and ``b``, addressed from 198.18.0.0/15 (.1 in a, .2 in b)."""
        n = next(_link_counter)
        if 4 * (n + 1) > LINK_SUPERNET.num_addresses:
            raise RuntimeError("no more /30 links in 198.18.0.0/15")
        net = ipaddress.ip_network((int(LINK_SUPERNET.network_address) + 4 * n, 30))
        a_if = a_if or f"fdv{n}a"
        b_if = b_if or f"fdv{n}b"
        _ip("link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if, "netns", b.name)
        hosts = list(net.hosts())
        link = Link(a, b, a_if, b_if, str(hosts[0]), str(hosts[1]), net.prefixlen)
        self.links.append(link)
        for ns, ifname, addr in ((a, a_if, link.a_ip), (b, b_if, link.b_ip)):
            _ip("-n", ns.name, "addr", "add", f"{addr}/{net.prefixlen}", "dev", ifname)
            _ip("-n", ns.name, "link", "set", ifname, "up")
        return link

    def close(self) -> None:
        """Stop processes, delete namespaces (their veths go with them) and /etc/netns dirs."""
        if self.closed:
            return
        errors: list[str] = []
        for ns in reversed(self.namespaces):
            errors.extend(ns._close())
        self.closed = True
        with _lock:
            _live_labs.discard(self)
            if _created_etc_netns and not _live_labs:
                try:
                    ETC_NETNS.rmdir()
                except OSError:
                    pass
        if errors:
            raise RuntimeError("; ".join(errors))


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout``; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@atexit.register
def _close_all() -> None:
    with _lock:
        labs = list(_live_labs)
    for lab in labs:
        try:
            lab.close()
        except Exception:  # noqa: BLE001, S110 - at exit: best effort, nothing to report to
            pass


# --- the node-local topology of the end-to-end tests ------------------------------------

POD_SEARCH = ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
POD_OPTIONS = ("ndots:5",)


@dataclass
class NodeLocalTopology:
    """A "pod" namespace reaching the node-local IP in a "node" namespace over a veth.

    ``pod`` has ``resolv.conf`` = ``nameserver 169.254.20.10``, the pod search
    list and ``options ndots:5``, ``nsswitch.conf`` ``hosts: files dns`` and a
    minimal ``hosts``; its only route beyond its link is ``local_ip/32`` via
    the node.  ``node`` carries ``local_ip`` as fastdns's ``--setup-interface``
    does (``interface``: a dummy link, or ``lo`` where the kernel has none).
    """

    lab: NetnsLab
    pod: Namespace
    node: Namespace
    link: Link  # a = pod, b = node
    local_ip: str
    interface: Any  # fastdns.nodelocal.interface.InterfaceSetup

    def attach(self, role: str) -> tuple[Namespace, Link]:
        """Another namespace linked to the node (node side ``link.a_ip``, new side ``link.b_ip``),
        e.g. for cluster DNS or an upstream; the pod cannot reach it."""
        ns = self.lab.namespace(role)
        return ns, self.lab.link(self.node, ns)


def build_nodelocal_topology(lab: NetnsLab, local_ip: str = NODE_LOCAL_IP,
                             search: Sequence[str] = POD_SEARCH,
                             options: Sequence[str] = POD_OPTIONS) -> NodeLocalTopology:
    """Make the pod and node namespaces of :class:`NodeLocalTopology` inside ``lab``."""
    from fastdns.nodelocal.interface import ensure_interface

    pod, node = lab.namespace("pod"), lab.namespace("node")
    link = lab.link(pod, node, a_if="eth0", b_if="vethpod")
    interface = ensure_interface("nodelocaldns", [local_ip], netns=node.name)
    pod.add_route(f"{local_ip}/32", via=link.b_ip)
    pod.write_resolv_conf([local_ip], search=search, options=options)
    pod.write_etc("nsswitch.conf", "hosts: files dns\n")
    pod.write_etc("hosts", "127.0.0.1 localhost\n::1 localhost\n")
    return NodeLocalTopology(lab, pod, node, link, local_ip, interface)
