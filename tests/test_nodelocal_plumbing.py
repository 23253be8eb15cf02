"""Node-local plumbing (--setup-interface, --setup-iptables) inside namespaces the tests create.

Nothing here touches the host's interfaces or iptables: every change runs
through ``ip netns exec`` in a fresh namespace; the host's rule set is
compared before and after to prove it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from fastdns._testing.netns import (
    ETC_NETNS,
    NAME_PREFIX,
    Namespace,
    NetnsLab,
    cleanup_stale,
    list_namespaces,
    netns_available,
)
from fastdns.errors import ServerError
from fastdns.nodelocal import (
    NodeLocalPlumbing,
    ensure_interface,
    ensure_rules,
    nodelocal_rules,
)
from fastdns.nodelocal._cmd import has_cap_net_admin, is_permission_error

IP = "169.254.20.10"
IP6 = "fd00:fd75::10"  # ULA: exists only inside the test namespace
# node-cache's comments, as written in kubernetes/dns cmd/node-cache/app/cache_app.go
COMMENT_SKIP_CONNTRACK = "NodeLocal DNS Cache: skip conntrack"
COMMENT_ALLOW_TRAFFIC = "NodeLocal DNS Cache: allow DNS traffic"


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    ok, reason = netns_available()
    if not ok:
        pytest.skip(f"network namespaces unavailable: {reason}")
    with NetnsLab() as lab:
        yield lab


@pytest.fixture
def ns(lab: NetnsLab) -> Namespace:
    return lab.namespace("plumb")


def need_iptables() -> None:
    for b in ("iptables", "ip6tables", "iptables-save", "ip6tables-save"):
        if shutil.which(b) is None:
            pytest.skip(f"needs {b} (Debian package iptables)")


def kernel_has_dummy(ns: Namespace) -> bool:
    r = ns.run(["ip", "link", "add", "fdtprobe", "type", "dummy"], check=False)
    if r.returncode == 0:
        ns.run(["ip", "link", "del", "fdtprobe"])
        return True
    return False


def addrs(ns: Namespace, dev: str) -> str:
    return ns.ip("-o", "addr", "show", "dev", dev)


def saved_rules(ns: Namespace, binary: str = "iptables-save") -> list[str]:
    out = ns.run([binary]).stdout
    return [line for line in out.splitlines() if line.startswith("-A ")]


def host_rules() -> str:
    out = []
    for b in ("iptables-save", "ip6tables-save"):
        r = subprocess.run([b], check=False, capture_output=True, text=True)
        out.append("\n".join(line for line in r.stdout.splitlines() if not line.startswith("#")))
    return "\n".join(out)


# --- interface --------------------------------------------------------------------------------

def test_interface_on_lo_without_dummy_driver_and_teardown_removes_only_ours(ns, caplog):
    if kernel_has_dummy(ns):
        pytest.skip("this kernel has the dummy driver: the lo fallback cannot be shown here")
    ns.add_address("169.254.20.11/32")  # pre-existing: must survive teardown
    with caplog.at_level(logging.WARNING, logger="fastdns.nodelocal"):
        setup = ensure_interface("nodelocaldns", [IP, "169.254.20.11", IP6], netns=ns.name)
    assert setup.fallback and setup.link == "lo" and not setup.created_link
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no 'dummy' interface driver" in w and "lo" in w for w in warnings), warnings
    lo = addrs(ns, "lo")
    assert f"inet {IP}/32" in lo and f"inet6 {IP6}/128" in lo
    assert setup.added == [f"{IP}/32", f"{IP6}/128"]
    assert "nodelocaldns" not in ns.ip("-o", "link")

    setup.teardown()
    lo = addrs(ns, "lo")
    assert f"inet {IP}/" not in lo and IP6 not in lo
    assert "inet 169.254.20.11/32" in lo and "inet 127.0.0.1/8" in lo
    setup.teardown()  # idempotent


def test_interface_with_dummy_driver_creates_and_deletes_link(ns):
    if not kernel_has_dummy(ns):
        pytest.skip("this kernel has no dummy driver (the lo fallback is tested instead)")
    setup = ensure_interface("nodelocaldns", [IP], netns=ns.name)
    assert setup.created_link and f"inet {IP}/32" in addrs(ns, "nodelocaldns")
    setup.teardown()
    assert "nodelocaldns" not in ns.ip("-o", "link")


def test_interface_address_is_usable_and_existing_address_kept(ns):
    # an address already there is neither re-added nor removed
    ns.add_address(f"{IP}/32")
    setup = ensure_interface("nodelocaldns", [IP], netns=ns.name)
    assert setup.added == []
    script = f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{IP}', 53)); print('bound')"
    r = ns.run([sys.executable, "-c", script])
    assert r.stdout.strip() == "bound"
    setup.teardown()
    assert f"inet {IP}/32" in addrs(ns, "lo")


def test_interface_rejects_bad_address(ns):
    with pytest.raises(ServerError, match="invalid local IP address 'not-an-ip'"):
        ensure_interface("nodelocaldns", ["not-an-ip"], netns=ns.name)


# --- iptables ---------------------------------------------------------------------------------

def test_iptables_rules_as_node_cache_then_removed(ns):
    need_iptables()
    before_host = host_rules()
    setup = ensure_rules([IP], netns=ns.name)
    rules = saved_rules(ns)
    assert len(rules) == 12
    # node-cache's rules (EnsureRule Prepend: each inserted at the top, so the chain holds them reversed)
    assert (f'-A PREROUTING -d {IP}/32 -p udp -m udp --dport 53 '
            f'-m comment --comment "{COMMENT_SKIP_CONNTRACK}" -j NOTRACK') in rules
    assert (f'-A INPUT -d {IP}/32 -p tcp -m tcp --dport 53 '
            f'-m comment --comment "{COMMENT_ALLOW_TRAFFIC}" -j ACCEPT') in rules
    assert (f'-A OUTPUT -s {IP}/32 -p udp -m udp --sport 53 '
            f'-m comment --comment "{COMMENT_ALLOW_TRAFFIC}" -j ACCEPT') in rules
    assert (f'-A OUTPUT -d {IP}/32 -p tcp -m tcp --dport 8080 '
            f'-m comment --comment "{COMMENT_SKIP_CONNTRACK}" -j NOTRACK') in rules
    raw_out = [r for r in ns.run(["iptables", "-w", "-t", "raw", "-S", "OUTPUT"]).stdout.splitlines()
               if r.startswith("-A")]
    assert raw_out[0].startswith(f"-A OUTPUT -s {IP}/32 -p tcp -m tcp --sport 8080")  # last added, first
    assert saved_rules(ns, "ip6tables-save") == []

    # idempotent: a second setup (and a resync) add nothing
    again = ensure_rules([IP], netns=ns.name)
    assert again.added == [] and len(saved_rules(ns)) == 12
    # a rule removed behind our back comes back on ensure()
    ns.run(["iptables", "-w", "-t", "raw", "-D", "PREROUTING", "-p", "udp", "-d", IP, "--dport", "53",
            "-j", "NOTRACK", "-m", "comment", "--comment", COMMENT_SKIP_CONNTRACK])
    assert len(saved_rules(ns)) == 11
    assert len(setup.ensure()) == 1 and len(saved_rules(ns)) == 12

    setup.teardown()
    assert saved_rules(ns) == []
    assert host_rules() == before_host


def test_ip6tables_for_ipv6_and_teardown_removes_every_copy(ns):
    need_iptables()
    rules = nodelocal_rules(IP6, port=53)
    assert {r.binary for r in rules} == {"ip6tables"}
    ns.run(rules[0].command("-A"))  # a copy left by an earlier instance
    setup = ensure_rules([IP6], netns=ns.name)
    assert len(setup.added) == 11
    assert len(saved_rules(ns, "ip6tables-save")) == 12 and saved_rules(ns) == []
    ns.run(rules[1].command("-A"))  # a duplicate
    setup.teardown()
    assert saved_rules(ns, "ip6tables-save") == []


def test_missing_iptables_binary_is_named(ns, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("ip"), bindir / "ip")
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(ServerError, match=r"needs the 'iptables' command.*package iptables"):
        ensure_rules([IP], netns=ns.name)


# --- privileges -------------------------------------------------------------------------------

DROPPED = textwrap.dedent("""
    import json, sys
    from fastdns.errors import ServerError
    from fastdns.nodelocal import ensure_interface, ensure_rules
    from fastdns.nodelocal._cmd import has_cap_net_admin
    ns = sys.argv[1]
    out = {"cap": has_cap_net_admin()}
    for what, fn in (("interface", lambda: ensure_interface("nodelocaldns", ["169.254.20.10"], netns=ns)),
                     ("iptables", lambda: ensure_rules(["169.254.20.10"], netns=ns))):
        try:
            fn()
            out[what] = "no error"
        except ServerError as exc:
            out[what] = str(exc)
    print(json.dumps(out))
""")


def drop_net_admin(argv: list[str]) -> list[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_NET_ADMIN")
    return ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", *argv]


def test_without_cap_net_admin_errors_name_the_capability(ns):
    need_iptables()
    assert has_cap_net_admin()
    r = subprocess.run(drop_net_admin([sys.executable, "-c", DROPPED, ns.name]),
                       check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["cap"] is False
    assert "--setup-interface" in out["interface"] and "needs CAP_NET_ADMIN" in out["interface"]
    assert "--setup-iptables" in out["iptables"] and "needs CAP_NET_ADMIN" in out["iptables"]
    assert f"{IP}/32" not in addrs(ns, "lo") and saved_rules(ns) == []


def test_real_permission_failures_are_recognised(ns):
    """What ip and iptables really print without the capability is detected as such."""
    need_iptables()
    for argv in (["ip", "addr", "add", f"{IP}/32", "dev", "lo"], nodelocal_rules(IP)[0].command("-I")):
        r = subprocess.run(drop_net_admin(ns.command(argv)), check=False, capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert is_permission_error(r.stderr), r.stderr
    assert not is_permission_error("Error: ipv4: Address already assigned.")


# --- plumbing (what serve calls) --------------------------------------------------------------

def test_plumbing_setup_and_teardown(ns):
    need_iptables()
    p = NodeLocalPlumbing([IP], "nodelocaldns", setup_interface=True, setup_iptables=True, netns=ns.name)
    with p:
        assert f"inet {IP}/32" in ns.ip("-o", "addr")
        assert len(saved_rules(ns)) == 12
        p.resync()
        assert len(saved_rules(ns)) == 12
    assert f"inet {IP}/32" not in ns.ip("-o", "addr")
    assert saved_rules(ns) == []
    p.teardown()  # idempotent


def test_plumbing_skip_teardown_leaves_everything(ns):
    need_iptables()
    p = NodeLocalPlumbing([IP], setup_interface=True, setup_iptables=True, skip_teardown=True, netns=ns.name)
    p.setup()
    p.teardown()
    assert f"inet {IP}/32" in ns.ip("-o", "addr") and len(saved_rules(ns)) == 12


def test_plumbing_failed_iptables_undoes_the_interface(ns):
    need_iptables()
    p = NodeLocalPlumbing([IP], setup_interface=True, setup_iptables=True, netns=ns.name,
                          health_port=70000)  # iptables rejects the port
    with pytest.raises(ServerError, match="70000"):
        p.setup()
    assert f"inet {IP}/32" not in ns.ip("-o", "addr")
    assert saved_rules(ns) == []


def test_plumbing_nothing_requested_does_nothing(ns):
    p = NodeLocalPlumbing([IP], netns=ns.name)
    p.setup()
    assert f"inet {IP}/32" not in ns.ip("-o", "addr")
    p.teardown()


# --- the namespace helper itself ---------------------------------------------------------------

def gone_or_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_netns_lab_leaves_nothing_behind():
    ok, reason = netns_available()
    if not ok:
        pytest.skip(reason)
    host_links = subprocess.run(["ip", "-o", "link"], check=False, capture_output=True, text=True).stdout
    lab = NetnsLab()
    a, b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(a, b)
    a.write_resolv_conf(["169.254.20.10"], search=["cluster.local"], options=["ndots:5"])
    assert a.run(["cat", "/etc/resolv.conf"]).stdout == (a.etc_dir / "resolv.conf").read_text()
    assert f"inet {link.a_ip}/30" in a.ip("-o", "addr", "show", "dev", link.a_if)
    assert f"inet {link.b_ip}/30" in b.ip("-o", "addr", "show", "dev", link.b_if)
    proc = b.popen(["sleep", "60"])
    # a grandchild the lab did not start directly is ended with its namespace
    child = b.popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    lab.close()
    assert not {a.name, b.name} & set(list_namespaces())
    assert not a.etc_dir.exists()
    assert proc.poll() is not None and child.poll() is not None
    assert gone_or_zombie(grandchild)
    assert subprocess.run(["ip", "-o", "link"], check=False, capture_output=True, text=True).stdout == host_links
    lab.close()  # idempotent


def test_cleanup_stale_removes_namespaces_of_dead_runs():
    ok, reason = netns_available()
    if not ok:
        pytest.skip(reason)
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{NAME_PREFIX}{dead.pid}-1-stale"
    subprocess.run(["ip", "netns", "add", name], check=True)
    (ETC_NETNS / name).mkdir(parents=True, exist_ok=True)
    try:
        assert name in cleanup_stale()
        assert name not in list_namespaces() and not (ETC_NETNS / name).exists()
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
