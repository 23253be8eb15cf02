"""Plugin directive parsing: values, defaults and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastdns.config import parse
from fastdns.errors import ConfigError
from fastdns.plugins.cache.conf import CacheConf
from fastdns.plugins.forward.conf import ForwardConf, Upstream
from fastdns.plugins.kubernetes.conf import KubernetesConf


def _conf(block: str, name: str, zone: str = ".", tmp: Path | None = None):
    filename = str(tmp / "Corefile") if tmp else "Corefile"
    return parse(f"{zone} {{\n{block}\n}}\n", filename=filename, env={}).servers[0].plugin(name)


def _err(block: str, zone: str = ".") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(f"{zone} {{\n{block}\n}}\n", filename="C", env={})
    return info.value


def test_kubernetes_defaults_and_directives(tmp_path: Path) -> None:
    demo = KubernetesConf()
    assert (demo.pods, demo.ttl, demo.fallthrough, demo.snapshot) == ("disabled", 5, None, None)
    (tmp_path / "snap.yaml").write_text("kind: List\nitems: []\n")
    (tmp_path / "kc").write_text("")
    k = _conf("kubernetes {\n snapshot snap.yaml\n kubeconfig kc ctx\n namespaces a b\n"
              " labels app=x,tier!=db\n endpoint_pod_names\n noendpoints\n fallthrough\n"
              " ignore empty_service\n ttl 0\n endpoint https://127.0.0.1:6443\n}",
              "kubernetes", zone="cluster.local 10.0.0.0/24", tmp=tmp_path)
    assert k.zones == ("cluster.local.", "0.0.10.in-addr.arpa.")
    assert k.snapshot == str(tmp_path / "snap.yaml")
    assert (k.kubeconfig, k.kubeconfig_context) == (str(tmp_path / "kc"), "ctx")
    assert k.namespaces == ("a", "b") and k.labels == "app=x,tier!=db"
    assert k.endpoint_pod_names and k.noendpoints and k.ignore_empty_service
    assert (k.fallthrough, k.ttl, k.endpoint) == ((".",), 0, "https://127.0.0.1:6443")


@pytest.mark.parametrize("block,where,message", [
    ("kubernetes in-addr.arpa", "2:1", "kubernetes: a non-reverse zone name must be used"),
    ("kubernetes {\n ttl -1\n}", "3:6", "invalid ttl -1"),
    ("kubernetes {\n ttl x\n}", "3:6", "invalid ttl 'x': not an integer"),
    ("kubernetes {\n kubeconfig\n}", "3:2", "wrong number of arguments for 'kubeconfig'"),
    ("kubernetes {\n snapshot nope.yaml\n}", "3:11", "snapshot file not found"),
    ("kubernetes {\n namespaces a\n namespace_labels x=y\n}", "2:1", "namespaces and namespace_labels"),
    ("kubernetes {\n multicluster\n}", "3:2", "kubernetes: 'multicluster' is not supported"),
])
def test_kubernetes_errors(block: str, where: str, message: str) -> None:
    err = _err(block, zone="cluster.local")
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_forward_upstreams_and_options(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.7\nnameserver fe80::1%eth0\n"
                                          "nameserver bogus\n")
    f = _conf("forward example.test 127.0.0.1 127.0.0.2:5300 [::1]:5301 tls://127.0.0.3 "
              "dns://127.0.0.4 ./resolv.conf 127.0.0.1 {\n except a.example.test b.example.test\n"
              " force_tcp\n expire 20s\n max_fails 0\n health_check 1m30s no_rec\n"
              " policy round_robin\n max_concurrent 10\n tls_servername dns.test\n"
              " next NXDOMAIN servfail\n}", "forward", tmp=tmp_path)
    assert isinstance(f, ForwardConf) and f.from_zone == "example.test."
    assert f.to == (Upstream("dns", "127.0.0.1", 53), Upstream("dns", "127.0.0.2", 5300),
                    Upstream("dns", "::1", 5301), Upstream("tls", "127.0.0.3", 853),
                    Upstream("dns", "127.0.0.4", 53), Upstream("dns", "127.0.0.7", 53),
                    Upstream("dns", "fe80::1", 53))
    assert f.resolv_conf == (str(tmp_path / "resolv.conf"),)
    assert f.except_zones == ("a.example.test.", "b.example.test.")
    assert (f.force_tcp, f.expire, f.max_fails, f.health_check) == (True, 20.0, 0, 90.0)
    assert (f.health_check_recursion, f.policy, f.max_concurrent) == (False, "round_robin", 10)
    assert f.tls_servername == "dns.test" and f.next_rcodes == ("NXDOMAIN", "SERVFAIL")
    d = ForwardConf()
    assert (d.max_fails, d.health_check, d.expire, d.policy) == (2, 0.5, 10.0, "random")


@pytest.mark.parametrize("block,where,message", [
    ("forward .", "2:1", "wrong number of arguments for 'forward'"),
    ("forward . example.com", "2:11", "invalid upstream 'example.com'"),
    ("forward . https://127.0.0.1", "2:11", "'https' is not supported"),
    ("forward . /no/such/resolv.conf", "2:11", "resolv.conf file not found"),
    ("forward . 127.0.0.1 {\n policy fastest\n}", "3:9", "unknown policy 'fastest'"),
    ("forward . 127.0.0.1 {\n expire 10\n}", "3:9", "invalid expire '10'"),
    ("forward . 127.0.0.1 {\n health_check -1s\n}", "3:15", "invalid health_check '-1s'"),
    ("forward . 127.0.0.1 {\n force_tcp yes\n}", "3:12", "'force_tcp' takes no arguments"),
    ("forward . 127.0.0.1 {\n next BOGUS\n}", "3:7", "'BOGUS' is not a valid rcode"),
    ("forward . 127.0.0.1 {\n bogus\n}", "3:2", "unknown property 'bogus' in 'forward'"),
    ("forward . " + " ".join(f"127.0.0.{i}" for i in range(1, 17)), "2:1", "more than 15"),
])
def test_forward_errors(block: str, where: str, message: str) -> None:
    err = _err(block)
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_cache_defaults_are_coredns() -> None:
    c = _conf("cache", "cache", zone="example.test")
    assert c == CacheConf(zones=("example.test.",))
    assert (c.success_capacity, c.success_ttl, c.success_minttl) == (9984, 3600, 5)
    assert (c.denial_capacity, c.denial_ttl, c.denial_minttl, c.servfail_ttl) == (9984, 1800, 5, 5.0)
    c = _conf("cache 300 a.test {\n success 100 60 10\n denial 50\n prefetch 5 30s 20%\n"
              " serve_stale\n servfail 0\n disable denial\n keepttl\n}", "cache")
    assert (c.ttl, c.zones, c.success_capacity, c.success_ttl, c.success_minttl) == (
        300, ("a.test.",), 100, 60, 10)
    assert (c.denial_capacity, c.denial_ttl) == (50, 300)
    assert (c.prefetch_amount, c.prefetch_duration, c.prefetch_percentage) == (5, 30.0, 20)
    assert (c.serve_stale, c.serve_stale_mode, c.servfail_ttl) == (3600.0, "immediate", 0.0)
    assert c.disable_denial_zones == (".",) and c.keepttl


@pytest.mark.parametrize("block,where,message", [
    ("cache {\n prefetch 1 1m 95%\n}", "3:16", "prefetch percentage should fall in range"),
    ("cache {\n servfail 6m\n}", "3:11", "invalid servfail duration '6m': must not be more than"),
    ("cache {\n disable both\n}", "3:10", "cache type for disable must be"),
    ("cache {\n serve_stale 1h later\n}", "3:17", "invalid value for serve_stale refresh mode"),
])
def test_cache_errors(block: str, where: str, message: str) -> None:
    err = _err(block)
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_ops_plugins() -> None:
    plan = parse(". {\n health 127.0.0.1:8081 {\n lameduck 250ms\n }\n ready [::1]:8182\n"
                 " prometheus 127.0.0.1:9154\n reload 10s 1s\n loadbalance round_robin\n"
                 " errors {\n consolidate 5m \".* timeout$\" warning show_first\n }\n"
                 " log a.test b.test \"{common}\" {\n class denial error\n }\n"
                 " hosts {\n 127.0.0.9 pod.example.test\n ttl 60\n fallthrough\n }\n}\n",
                 env={})
    s = plan.servers[0]
    assert (s.plugin("health").address, s.plugin("health").lameduck) == ("127.0.0.1:8081", 0.25)
    assert s.plugin("ready").address == "[::1]:8182"
    assert s.plugin("prometheus").address == "127.0.0.1:9154"
    assert (s.plugin("reload").interval, s.plugin("reload").jitter) == (10.0, 1.0)
    rule = s.plugin("errors").consolidate[0]
    assert (rule.period, rule.pattern, rule.level, rule.show_first) == (300.0, ".* timeout$",
                                                                        "warning", True)
    assert [(r.name, r.classes) for r in s.plugin("log").rules] == [
        ("a.test.", ("denial", "error")), ("b.test.", ("denial", "error"))]
    hosts = s.plugin("hosts")
    assert hosts.inline == (("127.0.0.9", ("pod.example.test",)),)
    assert (hosts.ttl, hosts.fallthrough, hosts.path) == (60, (".",), "/etc/hosts")


@pytest.mark.parametrize("block,where,message", [
    ("health :http", "2:8", "invalid health address ':http'"),
    ("health 8080", "2:8", "invalid health address '8080'"),
    ("ready :99999", "2:7", "invalid ready address ':99999'"),
    ("reload 1s", "2:8", "invalid reload interval '1s': must not be less than 2s"),
    ("bind 127.0.0.1 not-an-interface0", "2:16", "bind: 'not-an-interface0' is neither"),
    ("errors {\n consolidate 1m \"(\"\n}", "3:17", "invalid regular expression"),
    ("loadbalance weighted w.txt", "2:13", "loadbalance: the 'weighted' policy"),
    ("loadbalance {\n prefer 10.0.0.0/8\n}", "3:2", "loadbalance: 'prefer' is not supported"),
    ("hosts {\n bogus entry\n}", "3:2", "unknown property 'bogus' in 'hosts'"),
])
def test_ops_errors(block: str, where: str, message: str) -> None:
    err = _err(block)
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_bind_interface_name_resolves_to_its_addresses() -> None:
    s = parse(". {\n bind lo\n whoami\n}\n", env={}).servers[0]
    assert "127.0.0.1" in s.bind
