"""Table-driven Corefile tests: tests/data/corefiles/NNN-*.corefile.

The first line of each file says what to expect:
``# expect: ok`` or ``# expect: error [FILE:]LINE:COL: message-prefix``.
``/etc/resolv.conf`` in a Corefile is replaced by a test-owned resolv.conf
(never the machine's).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from fastdns.config import load, parse
from fastdns.config.nodelocal import fill_nodelocal_placeholders
from fastdns.errors import ConfigError

DATA = Path(__file__).parent / "data" / "corefiles"
CASES = sorted(DATA.glob("*.corefile"))


@pytest.fixture
def resolv(tmp_path: Path) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text("search example.test\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:5\n")
    return str(path)


def _parse_case(path: Path, resolv: str):
    text = path.read_text().replace("/etc/resolv.conf", resolv)
    return parse(text, filename=str(path), env={})


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_corefile_case(path: Path, resolv: str) -> None:
    expect = path.read_text().splitlines()[0]
    m = re.fullmatch(r"# expect: (ok|error (?:(\S+?):)?(\d+):(\d+): (.*))", expect)
    assert m, f"{path.name}: first line must be '# expect: ...'"
    if m.group(1) == "ok":
        plan = _parse_case(path, resolv)
        assert plan.servers
        return
    with pytest.raises(ConfigError) as info:
        _parse_case(path, resolv)
    err = info.value
    want_file = str(DATA / m.group(2)) if m.group(2) else str(path)
    assert os.path.abspath(err.file or "") == os.path.abspath(want_file), str(err)
    assert (err.line, err.column) == (int(m.group(3)), int(m.group(4))), str(err)
    assert err.message.startswith(m.group(5)), str(err)
    assert str(err).startswith(f"{err.file}:{err.line}:{err.column}: ")


def test_kubeadm_plan(resolv: str) -> None:
    plan = _parse_case(DATA / "001-kubeadm.corefile", resolv)
    (server,) = plan.servers
    assert (server.zones, server.port, server.transport, server.bind) == ((".",), 53, "dns", ())
    assert [p.name for p in server.plugins] == [
        "reload", "ready", "health", "prometheus", "errors", "loadbalance", "cache",
        "kubernetes", "loop", "forward"]
    k8s = server.plugin("kubernetes")
    assert k8s.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    assert (k8s.pods, k8s.ttl, k8s.fallthrough) == ("insecure", 30, ("in-addr.arpa.", "ip6.arpa."))
    assert k8s.primary_zone == "cluster.local."
    fwd = server.plugin("forward")
    assert [str(u) for u in fwd.to] == ["dns://127.0.0.1:53", "dns://[::1]:53"]
    assert fwd.resolv_conf == (resolv,) and fwd.max_concurrent == 1000 and fwd.max_fails == 2
    cache = server.plugin("cache")
    assert (cache.success_ttl, cache.denial_ttl, cache.success_capacity) == (30, 30, 9984)
    assert cache.disable_success_zones == ("cluster.local.",)
    assert cache.disable_denial_zones == ("cluster.local.",)
    assert server.plugin("health").lameduck == 5.0 and server.plugin("health").port == 8080
    assert server.plugin("ready").port == 8181
    assert server.plugin("prometheus").port == 9153
    assert server.plugin("hosts") is None


def test_nodelocaldns_addon() -> None:
    template = (DATA / "002-nodelocaldns.corefile.in").read_text()
    text = fill_nodelocal_placeholders(template, local_dns="169.254.20.10",
                                       dns_server="10.96.0.10", cluster_dns="10.96.0.11",
                                       upstream_servers=["127.0.0.1", "127.0.0.2"],
                                       dns_domain="cluster.local")
    assert "__PILLAR__" not in text
    plan = parse(text, filename="nodelocal.Corefile", env={})
    assert [s.zones for s in plan.servers] == [("cluster.local.",), ("in-addr.arpa.",),
                                                ("ip6.arpa.",), (".",)]
    for server in plan.servers:
        assert server.port == 53 and server.bind == ("169.254.20.10", "10.96.0.10")
        assert server.plugin("prometheus").port == 9253
    cluster = plan.servers[0]
    assert cluster.plugin("forward").force_tcp
    assert [str(u) for u in cluster.plugin("forward").to] == ["dns://10.96.0.11:53"]
    assert (cluster.plugin("cache").success_ttl, cluster.plugin("cache").denial_ttl) == (30, 5)
    assert cluster.plugin("health").address == "169.254.20.10:8080"
    assert [str(u) for u in plan.servers[3].plugin("forward").to] == [
        "dns://127.0.0.1:53", "dns://127.0.0.2:53"]
    (li_a, li_b) = plan.listeners
    assert (li_a.address, li_b.address) == ("169.254.20.10", "10.96.0.10")
    assert plan.servers[li_a.match("nginx.default.svc.cluster.local.")] is cluster
    assert plan.servers[li_a.match("www.example.test.")] is plan.servers[3]
    assert plan.servers[li_a.match("10.0.96.10.in-addr.arpa.")] is plan.servers[1]


def test_nodelocal_fill_like_node_cache(tmp_path: Path) -> None:
    template = (DATA / "002-nodelocaldns.corefile.in").read_text()
    # No custom upstreams: node-cache uses the node's resolv.conf (a path, kept as is).
    text = fill_nodelocal_placeholders(template, "169.254.20.10,10.96.0.10", "10.96.0.10",
                                       "10.96.0.11", None, "k8s.test")
    assert "forward . /etc/resolv.conf" in text and "k8s.test:53 {" in text
    assert "bind 169.254.20.10 10.96.0.10\n" in text     # L then S, as the addon's sed gives
    assert "health 169.254.20.10:8080\n" in text          # L alone
    # IPVS mode: only the link-local address, no dangling space.
    ipvs = fill_nodelocal_placeholders(template, "169.254.20.10", None, "10.96.0.10", None)
    assert "bind 169.254.20.10\n" in ipvs
    # Custom upstreams replace a force_tcp upstream block by a UDP forward line.
    tcp = ".:53 {\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n            force_tcp\n    }\n}\n"
    out = fill_nodelocal_placeholders(tcp, "169.254.20.10", None, "10.96.0.11", ["127.0.0.9"])
    assert "force_tcp" not in out and "forward . 127.0.0.9\n" in out


def test_load_reads_file_and_imports(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("a.example:1053 {\n    whoami\n}\n")
    (tmp_path / "conf.d" / "b.conf").write_text("b.example:1053 {\n    whoami\n}\n")
    (tmp_path / "extra.snip").write_text("log\n")
    core = tmp_path / "Corefile"
    core.write_text("import conf.d/*.conf\n.:1053 {\n    import extra.snip\n    errors\n}\n")
    plan = load(str(core), env={})
    assert [s.zones for s in plan.servers] == [("a.example.",), ("b.example.",), (".",)]
    assert [p.name for p in plan.servers[2].plugins] == ["errors", "log"]
    # An error inside an imported file names that file.
    (tmp_path / "conf.d" / "b.conf").write_text("b.example:1053 {\n    whomai\n}\n")
    with pytest.raises(ConfigError) as info:
        load(str(core), env={})
    assert str(info.value) == f"{tmp_path / 'conf.d' / 'b.conf'}:2:5: unknown plugin 'whomai'"


def test_glob_without_match_is_not_an_error(tmp_path: Path) -> None:
    core = tmp_path / "Corefile"
    core.write_text("import nothing/*.conf\n.:1053 {\n    whoami\n}\n")
    assert load(str(core), env={}).servers[0].zones == (".",)
