"""Parsing of chaos, nsid, bufsize, any, minimal, local and acl.

The cases are CoreDNS's own setup tests for each plugin (plugin/<name>/setup_test.go),
with the values and the located errors fastdns gives, plus the edges of each syntax.
"""

from __future__ import annotations

import pytest

from fastdns.config import parse, registry
from fastdns.errors import ConfigError
from fastdns.plugins.acl.conf import AclConf, AclPolicy, AclRule
from fastdns.plugins.any.conf import AnyConf
from fastdns.plugins.bufsize.conf import BufsizeConf
from fastdns.plugins.chaos.conf import DEFAULT_AUTHORS, DEFAULT_VERSION, ChaosConf
from fastdns.plugins.local.conf import LocalConf
from fastdns.plugins.minimal.conf import MinimalConf
from fastdns.plugins.nsid.conf import NsidConf, default_nsid

NAMES = ("chaos", "nsid", "bufsize", "any", "minimal", "local", "acl")


def _conf(block: str, name: str, zone: str = "."):
    return parse(f"{zone} {{\n{block}\n}}\n", filename="Corefile", env={}).servers[0].plugin(name)


def _err(block: str, zone: str = ".") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(f"{zone} {{\n{block}\n}}\n", filename="C", env={})
    return info.value


def _check(block: str, where: str, message: str, zone: str = ".") -> None:
    err = _err(block, zone)
    assert err.file == "C"
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_registered_supported_not_served_by_the_parser() -> None:
    once = {"chaos": True, "nsid": True, "bufsize": True, "any": True, "minimal": True,
            "local": False, "acl": False}
    for name in NAMES:
        spec = registry.spec(name)
        assert spec is not None and spec.once is once[name], name
        assert (spec.merge is not None) is (not once[name]), name


# --- chaos (plugin/chaos/setup_test.go) -----------------------------------------------------

@pytest.mark.parametrize("block,version,authors", [
    ("chaos v2", "v2", DEFAULT_AUTHORS),
    ('chaos v3 "Miek Gieben"', "v3", ("Miek Gieben",)),
    ("chaos", DEFAULT_VERSION, DEFAULT_AUTHORS),
    ("chaos v1 zed amy zed bob", "v1", ("amy", "bob", "zed")),   # a set, sorted
    ("chaos v1 {\n}", "v1", DEFAULT_AUTHORS),                    # empty block
])
def test_chaos(block: str, version: str, authors: tuple[str, ...]) -> None:
    assert _conf(block, "chaos") == ChaosConf(version, authors)


def test_chaos_defaults_and_trim() -> None:
    assert DEFAULT_VERSION.startswith("fastdns-") and ChaosConf() == _conf("chaos", "chaos")
    long = "v" * 300
    assert _conf(f"chaos {long}", "chaos").version == "v" * 255
    c = _conf(f"chaos {long} {'a' * 256} b", "chaos")
    assert (c.version, c.authors) == ("v" * 255, ("a" * 255, "b"))
    # cut to 255 bytes, never inside a UTF-8 character
    assert _conf("chaos " + "é" * 200, "chaos").version == "é" * 127


@pytest.mark.parametrize("block,where,message", [
    ("chaos v2 {\n unknown\n}", "3:2", "unknown property 'unknown' in 'chaos'"),
    ("chaos v1\nchaos v2", "3:1", "plugin 'chaos' can only be used once per server block"),
])
def test_chaos_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


# --- nsid (plugin/nsid/setup_test.go) -------------------------------------------------------

@pytest.mark.parametrize("block,data", [
    ("nsid", default_nsid()),
    ('nsid "ps0"', "ps0"),
    ('nsid "worker1"', "worker1"),
    ('nsid "tf 2"', "tf 2"),
    ("nsid Use The Force", "Use The Force"),
])
def test_nsid(block: str, data: str) -> None:
    conf = _conf(block, "nsid")
    assert conf == NsidConf(data) and conf.payload == data.encode()


def test_nsid_default_is_the_host_name() -> None:
    import socket
    assert NsidConf().data == default_nsid() == (socket.gethostname() or "localhost")


@pytest.mark.parametrize("block,where,message", [
    ("nsid\nnsid", "3:1", "plugin 'nsid' can only be used once per server block (first used at C:2:1)"),
    ("nsid x {\n y\n}", "3:2", "unknown property 'y' in 'nsid'"),
])
def test_nsid_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


# --- bufsize (plugin/bufsize/setup_test.go) -------------------------------------------------

@pytest.mark.parametrize("block,size", [
    ("bufsize", 1232), ('bufsize "1220"', 1220), ("bufsize 512", 512), ("bufsize 4096", 4096),
])
def test_bufsize(block: str, size: int) -> None:
    assert _conf(block, "bufsize") == BufsizeConf(size)


@pytest.mark.parametrize("block,where,message", [
    ('bufsize "5000"', "2:9", "invalid bufsize 5000: must be in range [512, 4096]"),
    ('bufsize "512 512"', "2:9", "invalid bufsize '512 512': not an integer"),
    ('bufsize "511"', "2:9", "invalid bufsize 511: must be in range [512, 4096]"),
    ('bufsize "abc123"', "2:9", "invalid bufsize 'abc123': not an integer"),
    ("bufsize 512 512", "2:13", "wrong number of arguments for 'bufsize'"),
    ("bufsize 1232 {\n x\n}", "3:2", "unknown property 'x' in 'bufsize'"),
    ("bufsize\nbufsize 1000", "3:1", "plugin 'bufsize' can only be used once"),
])
def test_bufsize_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


# --- any, minimal (plugin/any/setup_test.go, plugin/minimal/setup_test.go) ------------------

def test_any_and_minimal() -> None:
    assert _conf("any", "any") == AnyConf()
    assert _conf("minimal", "minimal") == MinimalConf()


@pytest.mark.parametrize("block,where,message", [
    ("any example.org", "2:5", "wrong number of arguments for 'any' (usage: any)"),
    ("any { foo }", "2:7", "unknown property 'foo' in 'any'"),
    ("any\nany", "3:1", "plugin 'any' can only be used once"),
    ("minimal example.org", "2:9", "wrong number of arguments for 'minimal' (usage: minimal)"),
    ("minimal {\n foo\n}", "3:2", "unknown property 'foo' in 'minimal'"),
    ("minimal\nminimal", "3:1", "plugin 'minimal' can only be used once"),
])
def test_any_and_minimal_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


# --- local (plugin/local/setup_test.go) -----------------------------------------------------

@pytest.mark.parametrize("block,prefix", [
    ("local", True),
    ("local {\n localhost_prefix off\n}", False),
    ("local {\n localhost_prefix on\n}", True),
    ("local {\n localhost_prefix off\n localhost_prefix on\n}", True),
    # several lines are one plugin; the last setting given wins, a bare line changes nothing
    ("local {\n localhost_prefix off\n}\nlocal", False),
    ("local {\n localhost_prefix off\n}\nlocal {\n localhost_prefix on\n}", True),
])
def test_local(block: str, prefix: bool) -> None:
    plan = parse(f". {{\n{block}\n}}\n", filename="Corefile", env={})
    assert plan.servers[0].plugins_named("local") == (LocalConf(prefix),)


@pytest.mark.parametrize("block,where,message", [
    ("local example.org", "2:7", "wrong number of arguments for 'local'"),
    ("local { foo }", "2:9", "unknown property 'foo' in 'local'"),
    ("local {\n localhost_prefix maybe\n}", "3:19", "localhost_prefix expects 'on' or 'off', got 'maybe'"),
    ("local {\n localhost_prefix\n}", "3:2", "wrong number of arguments for 'localhost_prefix'"),
    ("local {\n localhost_prefix on off\n}", "3:22", "wrong number of arguments for 'localhost_prefix'"),
    ("local {\n localhost_prefix OFF\n}", "3:19", "localhost_prefix expects 'on' or 'off'"),
])
def test_local_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


# --- acl (plugin/acl/setup_test.go) ---------------------------------------------------------

A, AAAA, TXT, CNAME, ANY = 1, 28, 16, 5, 255
V6 = "2001:db8:85a3::8a2e:370:7334/128"


def _acl(body: str, args: str = "", zone: str = ".") -> tuple[AclPolicy, ...]:
    conf = _conf(f"acl {args}{{\n{body}\n}}", "acl", zone)
    assert isinstance(conf, AclConf) and len(conf.rules) == 1
    return conf.rules[0].policies


@pytest.mark.parametrize("body,policies", [
    ("block type A net 192.168.0.0/16", [AclPolicy("block", (A,), ("192.168.0.0/16",))]),
    ("block type * net 192.168.0.0/16", [AclPolicy("block", None, ("192.168.0.0/16",))]),
    ("block type A net *", [AclPolicy("block", (A,), None)]),
    ("allow type * net 192.168.1.0/24\nblock type * net 192.168.0.0/16",
     [AclPolicy("allow", None, ("192.168.1.0/24",)), AclPolicy("block", None, ("192.168.0.0/16",))]),
    ("filter type A net 192.168.0.0/16", [AclPolicy("filter", (A,), ("192.168.0.0/16",))]),
    ("allow type * net 192.168.0.0/16\nblock type * net *",
     [AclPolicy("allow", None, ("192.168.0.0/16",)), AclPolicy("block")]),
    ("drop type * net 192.168.0.0/16", [AclPolicy("drop", None, ("192.168.0.0/16",))]),
    ("block type * net 192.168.1.0/24 192.168.3.0/24",
     [AclPolicy("block", None, ("192.168.1.0/24", "192.168.3.0/24"))]),
    ("block type TXT ANY CNAME net 192.168.3.0/24",
     [AclPolicy("block", (CNAME, TXT, ANY), ("192.168.3.0/24",))]),
    # IPv6 cases
    ("block type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334", [AclPolicy("block", (A,), (V6,))]),
    ("block type * net 2001:db8:85a3::8a2e:370:7334", [AclPolicy("block", None, (V6,))]),
    ("block type A", [AclPolicy("block", (A,), None)]),
    ("allow net 2001:db8:abcd:0012::0/64\nblock net 2001:db8:abcd:0012::0/48",
     [AclPolicy("allow", None, ("2001:db8:abcd:12::/64",)),
      AclPolicy("block", None, ("2001:db8:abcd::/48",))]),
    ("filter type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334", [AclPolicy("filter", (A,), (V6,))]),
    ("allow net 2001:db8:abcd:0012::0/64\nblock",
     [AclPolicy("allow", None, ("2001:db8:abcd:12::/64",)), AclPolicy("block")]),
    ("drop net 2001:db8:abcd:0012::0/64", [AclPolicy("drop", None, ("2001:db8:abcd:12::/64",))]),
    ("block net 2001:db8:abcd:0012::0/64 2001:db8:85a3::8a2e:370:7334/64",
     [AclPolicy("block", None, ("2001:db8:abcd:12::/64", "2001:db8:85a3::/64"))]),
    # normalize(): a single address is a /32 or /128; host bits are cleared (Go's ParseCIDR)
    ("allow net 10.218.10.8/24 10.218.10.8", [AclPolicy("allow", None, ("10.218.10.0/24", "10.218.10.8/32"))]),
    # the edges: any case for actions, keywords and types; repeated sections add up;
    # '*' wins over the other values; duplicates dropped; TYPEnnn
    ("BLOCK TYPE a Net 10.0.0.0/8 type aaaa net 10.0.0.0/8 10.1.0.0/16",
     [AclPolicy("block", (A, AAAA), ("10.0.0.0/8", "10.1.0.0/16"))]),
    ("block type A * net 10.0.0.0/8 *", [AclPolicy("block")]),
    ("block type TYPE65534 AAAA", [AclPolicy("block", (AAAA, 65534), None)]),
    ("allow net 10.0.0.0/08", [AclPolicy("allow", None, ("10.0.0.0/8",))]),
])
def test_acl_policies(body: str, policies: list[AclPolicy]) -> None:
    assert _acl(body) == tuple(policies)


def test_acl_zones_and_rules_in_order() -> None:
    # fine-grained 1 / 2: the rule's zones, and one rule per acl line in Corefile order
    plan = parse("example.org {\nacl a.example.org {\n block type * net 192.168.1.0/24\n}\n"
                 "acl b.example.org {\n block type * net 192.168.2.0/24\n}\nacl\n}\n",
                 filename="Corefile", env={})
    assert plan.servers[0].plugins_named("acl") == (AclConf((
        AclRule(("a.example.org.",), (AclPolicy("block", None, ("192.168.1.0/24",)),)),
        AclRule(("b.example.org.",), (AclPolicy("block", None, ("192.168.2.0/24",)),)),
        AclRule(("example.org.",), ()),
    )),)
    assert _conf("acl", "acl", zone="example.org 10.0.0.0/24") == AclConf(
        (AclRule(("example.org.", "0.0.10.in-addr.arpa."), ()),))


@pytest.mark.parametrize("body,where,message", [
    # Missing argument 1 / 2
    ("block A net 192.168.0.0/16", "3:8", "unexpected token 'A'; expect 'type' or 'net'"),
    ("block type net 192.168.0.0/16", "3:8", "no token specified in 'type' section"),
    # Illegal argument 1..4
    ("block type ABC net 192.168.0.0/16", "3:13", "unexpected token 'ABC'; expect a legal QTYPE"),
    ("blck type A net 192.168.0.0/16", "3:2",
     "unexpected token 'blck'; expect 'allow', 'block', 'filter' or 'drop'"),
    ("block type A net 192.168.0/16", "3:19", "illegal CIDR notation '192.168.0/16'"),
    ("block type A net 192.168.0.0/33", "3:19", "illegal CIDR notation '192.168.0.0/33'"),
    # Illegal argument 1 / 2 IPv6
    ("block type A net 2001::85a3::8a2e:370:7334", "3:19", "illegal CIDR notation"),
    ("block type A net 2001:db8:85a3:::8a2e:370:7334", "3:19", "illegal CIDR notation"),
    # the edges
    ("block net", "3:8", "no token specified in 'net' section"),
    ("block type A net", "3:15", "no token specified in 'net' section"),
    ("block type * BOGUS", "3:15", "unexpected token 'BOGUS'; expect a legal QTYPE"),
    ("block type NONE", "3:13", "unexpected token 'NONE'; expect a legal QTYPE (use '*'"),
    ("block net 10.0.0.0/255.0.0.0", "3:12", "illegal CIDR notation '10.0.0.0/255.0.0.0'"),
    ("block net fe80::1%eth0", "3:12", "illegal CIDR notation 'fe80::1%eth0'"),
    ("block net 10.0.0.0/", "3:12", "illegal CIDR notation '10.0.0.0/'"),
    ("block net 010.0.0.1", "3:12", "illegal CIDR notation '010.0.0.1'"),
    ("block net example.org", "3:12", "illegal CIDR notation 'example.org'"),
    ("block {\n net *\n }", "3:8", "unexpected block after 'block' in 'acl'"),
])
def test_acl_errors(body: str, where: str, message: str) -> None:
    _check(f"acl {{\n {body}\n}}", where, message)


@pytest.mark.parametrize("name", NAMES)
def test_readme_has_an_example_and_says_whether_served(name: str) -> None:
    from pathlib import Path

    from fastdns.plugins.runtime import plugin
    text = (Path(__file__).parent.parent / "fastdns" / "plugins" / name / "README.md").read_text()
    assert f"# {name}\n" in text and "~~~ corefile\n" in text
    assert "## Differences from CoreDNS" in text
    # the note is there exactly while the plugin has no runtime entry
    assert ("**Not served yet.**" in text) is (not plugin(name).served), name
