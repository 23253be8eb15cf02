"""`fastdns serve --setup-interface --setup-iptables` in a namespace the test creates (issue 7)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from fastdns._testing.netns import NODE_LOCAL_IP, wait_for

pytestmark = pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables is not installed")


def corefile(tmp_path):
    (tmp_path / "cluster.yaml").write_text(
        (__import__("pathlib").Path(__file__).resolve().parents[2] / "fastdns/demo/cluster.yaml").read_text())
    core = tmp_path / "Corefile"
    core.write_text(textwrap.dedent(f"""\
        cluster.local:53 {{
            bind {NODE_LOCAL_IP}
            kubernetes cluster.local {{
                snapshot {tmp_path / 'cluster.yaml'}
            }}
        }}
        """))
    return core


def start(ns, core, *extra):
    return ns.popen([sys.executable, "-m", "fastdns", "serve", "--conf", str(core), "--workers", "1",
                     "--localip", NODE_LOCAL_IP, "--setup-interface", "--setup-iptables", *extra],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def answers(ns) -> bool:
    r = ns.run(["dig", f"@{NODE_LOCAL_IP}", "+time=1", "+tries=1", "+short",
                "nginx-svc.default.svc.cluster.local"], check=False)
    return r.stdout.split() == ["10.96.0.50"]


def state(ns) -> tuple[bool, int]:
    addr = f"inet {NODE_LOCAL_IP}/32" in ns.ip("-o", "addr", "show")
    rules = ns.run(["iptables-save"]).stdout.count("NodeLocal DNS Cache")
    return addr, rules


def test_setup_then_teardown_on_sigterm(netns_lab, tmp_path):
    ns = netns_lab.namespace("node")
    assert state(ns) == (False, 0)
    p = start(ns, corefile(tmp_path))
    assert wait_for(lambda: answers(ns), 20), p.stdout and p.stdout.read()
    addr, rules = state(ns)
    assert addr and rules >= 8                 # NOTRACK + ACCEPT rules, udp and tcp, in and out
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0, out
    assert "no dummy" in out.lower() or "dummy" in out.lower()   # the lo fallback is announced
    assert state(ns) == (False, 0)             # both removed on exit


def test_skip_teardown_leaves_them(netns_lab, tmp_path):
    ns = netns_lab.namespace("node")
    p = start(ns, corefile(tmp_path), "--skip-teardown")
    assert wait_for(lambda: answers(ns), 20)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    addr, rules = state(ns)
    assert addr and rules >= 8


def test_without_net_admin_names_the_capability(netns_lab, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop the capability")
    ns = netns_lab.namespace("node")
    r = ns.run(["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
                sys.executable, "-m", "fastdns", "serve", "--conf", str(corefile(tmp_path)),
                "--localip", NODE_LOCAL_IP, "--setup-interface"], check=False, timeout=60)
    assert r.returncode == 1
    assert "CAP_NET_ADMIN" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert state(ns) == (False, 0)


def test_rules_removed_behind_its_back_are_put_back(netns_lab, tmp_path):
    """--sync-interval (node-cache's -syncinterval): rules something deleted come back
    within the interval, and queries keep being answered."""
    ns = netns_lab.namespace("node")
    p = start(ns, corefile(tmp_path), "--sync-interval", "0.5")
    try:
        assert wait_for(lambda: answers(ns), 20)
        full = state(ns)[1]
        assert full >= 8
        # someone flushes the rules (and we count them in the same breath: the
        # resync may put them back at any moment after)
        left = ns.run(["sh", "-c", "iptables -t raw -F; iptables -t filter -F; "
                       "iptables-save | grep -c 'NodeLocal DNS Cache' || true"]).stdout.strip()
        assert left == "0", left
        assert wait_for(lambda: state(ns)[1] == full, 10), "rules were not put back"
        assert answers(ns)
    finally:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=20)
    assert p.returncode == 0, out
    assert "added iptables rule" in out
    assert state(ns) == (False, 0)


def test_negative_sync_interval_is_a_clear_error(netns_lab, tmp_path):
    ns = netns_lab.namespace("node")
    r = ns.run([sys.executable, "-m", "fastdns", "serve", "--conf", str(corefile(tmp_path)),
                "--localip", NODE_LOCAL_IP, "--setup-iptables", "--sync-interval", "-1"],
               check=False, timeout=60)
    assert r.returncode == 1 and "--sync-interval -1" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert state(ns) == (False, 0)
