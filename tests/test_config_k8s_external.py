"""Parsing of ``k8s_external``: CoreDNS's plugin/k8s_external/setup_test.go cases, the
located errors, and the check that the block has a ``kubernetes`` line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastdns.config import parse, registry
from fastdns.errors import ConfigError
from fastdns.plugins import runtime
from fastdns.plugins.k8s_external.conf import DEFAULT_APEX, DEFAULT_TTL, K8sExternalConf
from fastdns.routing import check_plan

K8S = "kubernetes cluster.local"


def _conf(block: str, zone: str = "."):
    return parse(f"{zone} {{\n{K8S}\n{block}\n}}\n", filename="Corefile",
                 env={}).servers[0].plugin("k8s_external")


def _check(block: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f". {{\n{block}\n}}\n", filename="C", env={})
    err = info.value
    assert err.file == "C"
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_registered_once_and_served() -> None:
    spec = registry.spec("k8s_external")
    assert spec is not None and spec.once and spec.merge is None
    assert runtime.served("k8s_external")
    assert "k8s_external" in runtime.sources()
    assert registry.order_index("k8s_external") < registry.order_index("kubernetes")


# setup_test.go: (input, zone, apex, headless, fallthrough)
@pytest.mark.parametrize("block,zones,apex,headless,fall", [
    ("k8s_external", (".",), "dns", False, None),
    ("k8s_external example.org", ("example.org.",), "dns", False, None),
    ("k8s_external example.org {\n apex testdns\n}", ("example.org.",), "testdns", False, None),
    ("k8s_external example.org {\n headless\n}", ("example.org.",), "dns", True, None),
    ("k8s_external example.org {\n fallthrough\n}", ("example.org.",), "dns", False, (".",)),
    ("k8s_external example.org {\n fallthrough ip6.arpa inaddr.arpa foo.com\n}",
     ("example.org.",), "dns", False, ("ip6.arpa.", "inaddr.arpa.", "foo.com.")),
])
def test_coredns_setup_cases(block, zones, apex, headless, fall) -> None:
    c = _conf(block)
    assert (c.zones, c.apex, c.headless, c.fallthrough) == (zones, apex, headless, fall)
    assert c.ttl == DEFAULT_TTL == 5 and DEFAULT_APEX == "dns"


def test_defaults_zones_and_ttl() -> None:
    assert _conf("k8s_external") == K8sExternalConf()
    # no zone: the server block's zones (OriginsFromArgsOrServerBlock)
    assert _conf("k8s_external", zone="example.net").zones == ("example.net.",)
    assert _conf("k8s_external a.example b.example").zones == ("a.example.", "b.example.")
    assert _conf("k8s_external example.org {\n ttl 0\n}").ttl == 0
    assert _conf("k8s_external example.org {\n ttl 3600\n}").ttl == 3600
    assert _conf("k8s_external example.org {\n apex NS.\n}").apex == "ns"
    c = _conf("k8s_external example.org 10.0.0.0/24 {\n ttl 30\n headless\n apex x\n}")
    assert c == K8sExternalConf(("example.org.", "0.0.10.in-addr.arpa."), "x", 30, True)
    hash(c)                            # confs are dict keys on reload


@pytest.mark.parametrize("block,where,message", [
    ("k8s_external example.org {\n ttl\n}", "3:2", "wrong argument count"),
    ("k8s_external example.org {\n ttl 3601\n}", "3:6", "invalid ttl 3601: must be in range [0, 3600]"),
    ("k8s_external example.org {\n ttl -1\n}", "3:6", "invalid ttl -1: must be in range [0, 3600]"),
    ("k8s_external example.org {\n ttl five\n}", "3:6", "invalid ttl 'five': not an integer"),
    ("k8s_external example.org {\n ttl 5 6\n}", "3:8", "ttl takes one value"),
    ("k8s_external example.org {\n apex\n}", "3:2", "wrong argument count"),
    ("k8s_external example.org {\n apex a.b\n}", "3:7", "invalid apex 'a.b': must be one DNS label"),
    ("k8s_external example.org {\n headless yes\n}", "3:11", "'headless' takes no arguments"),
    ("k8s_external example.org {\n resync 30s\n}", "3:2",
     "unknown property 'resync' in 'k8s_external'"),
    ("kubernetes\nk8s_external a.org\nk8s_external b.org", "4:1",
     "plugin 'k8s_external' can only be used once per server block"),
])
def test_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


def test_needs_kubernetes_in_the_same_block(tmp_path: Path) -> None:
    text = ". {\n    k8s_external example.org\n}\nexample.net {\n    kubernetes cluster.local\n}\n"
    plan = parse(text, filename="C", env={})      # parses: the check is the served plan's
    with pytest.raises(ConfigError) as info:
        check_plan(plan)
    err = info.value
    assert (err.file, err.line, err.column) == ("C", 2, 5)
    assert "kubernetes plugin is not loaded" in err.message
    check_plan(parse(". {\n    kubernetes cluster.local\n    k8s_external example.org\n}\n",
                     filename="C", env={}))
    # check-config says so too, naming the line
    conf = tmp_path / "Corefile"
    conf.write_text(text)
    out = subprocess.run([sys.executable, "-m", "fastdns", "check-config", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"{conf}:2:5: k8s_external: the kubernetes plugin is not loaded" in out.stderr + out.stdout


def test_engine_stage() -> None:
    plan = parse(". {\n kubernetes cluster.local\n k8s_external example.org in-addr.arpa {\n"
                 "  fallthrough example.org\n }\n}\n", filename="C", env={})
    stages = runtime.engine_config(plan)["blocks"][0]["stages"]
    ext, k8s = [st for st in stages if st["kind"] == "table"]
    assert (ext["plugin"], k8s["plugin"]) == ("k8s_external", "kubernetes")
    assert ext["zones_text"] == ["example.org.", "in-addr.arpa."]
    assert ext["wildcard"] and not ext.get("refuse_xfr") and not ext.get("soa_nodata")
    assert ext["tid"] < k8s["tid"]
