"""Parsing of ``transfer``: CoreDNS's plugin/transfer/setup_test.go cases (TestParse,
TestSetup), with the located errors fastdns gives, and transfer_test.go's
longestMatch and ``to`` cases on the parsed configuration."""

from __future__ import annotations

import pytest

from fastdns.config import parse, registry
from fastdns.errors import ConfigError
from fastdns.plugins.runtime import served
from fastdns.plugins.transfer.conf import TransferConf, Xfr, longest_match


def _conf(block: str, zone: str = ".") -> TransferConf:
    return parse(f"{zone} {{\n{block}\n}}\n", filename="Corefile", env={}).servers[0].plugin(
        "transfer")


def _check(block: str, where: str, message: str, zone: str = ".") -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"{zone} {{\n{block}\n}}\n", filename="C", env={})
    err = info.value
    assert err.file == "C"
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_registered_and_served() -> None:
    spec = registry.spec("transfer")
    assert spec is not None and spec.once is False and spec.merge is not None
    assert served("transfer")
    assert registry.order_index("transfer") < min(registry.order_index(p)
                                                  for p in ("hosts", "kubernetes", "file"))


def test_coredns_parse_two_lines() -> None:
    # setup_test.go case 0, without `source` (fastdns sends no NOTIFY: refused below)
    conf = _conf("""transfer example.net example.org {
    to 1.2.3.4 5.6.7.8:1053 [1::2]:34 [fe80::1%eth0]:53
}
transfer example.com example.edu {
    to * 1.2.3.4
}""")
    assert conf == TransferConf((
        Xfr(("example.net.", "example.org."),
            ("1.2.3.4:53", "5.6.7.8:1053", "[1::2]:34", "[fe80::1%eth0]:53")),
        Xfr(("example.com.", "example.edu."), ("*", "1.2.3.4:53")),
    ))
    assert conf.zones == ("example.net.", "example.org.", "example.com.", "example.edu.")


def test_coredns_parse_zones_from_the_server_block() -> None:
    conf = _conf("transfer {\n    to 1.2.3.4 5.6.7.8:1053 [1::2]:34\n}")
    assert conf == TransferConf((Xfr((".",), ("1.2.3.4:53", "5.6.7.8:1053", "[1::2]:34")),))
    conf = _conf("transfer {\n    to *\n}", zone="Example.ORG:1053")
    assert conf.xfrs[0].zones == ("example.org.",)


def test_to_may_be_repeated() -> None:
    conf = _conf("transfer {\n    to 1.2.3.4\n    to 5.6.7.8\n}")
    assert conf.xfrs[0].to == ("1.2.3.4:53", "5.6.7.8:53")


def test_coredns_errors() -> None:
    # an empty block, and a bare `transfer` (TestSetup): 'to' is required
    _check("transfer example.net example.org {\n}", "2:1", "'to' is required")
    _check("transfer", "2:1", "'to' is required")
    # an unknown property
    _check("transfer example.net example.org {\ninvalid option\n}", "3:1",
           "unknown property 'invalid'")
    # `to` with a name, not an address
    _check("transfer example.com example.edu {\nto example.com 1.2.3.4\n}", "3:4",
           "must specify an IP address")
    _check("transfer {\nto\n}", "3:1", "wrong argument count")
    _check("transfer {\nto 1.2.3.4:99999\n}", "3:4", "invalid address")


@pytest.mark.parametrize("block", [
    "transfer example.net {\nto 1.2.3.4\nsource 2001:db8::53\n}",
    "transfer example.net {\nto 1.2.3.4\nsource example.org\n}",          # CoreDNS: invalid
    "transfer example.net {\nto 1.2.3.4\nsource 192.0.2.53\nsource 2001:db8::53\n}",
])
def test_source_is_refused(block: str) -> None:
    # CoreDNS accepts one valid source (NOTIFY's local address); fastdns sends no NOTIFY
    _check(block, "4:1", "'source' sets the address NOTIFY messages are sent from")


def test_longest_match() -> None:
    # transfer_test.go TestLongestMatchMostSpecificZone / ...NilWhenNoMatch
    x1 = Xfr(("example.org.",), ("*",))
    x2 = Xfr(("a.example.org.",), ("*",))
    assert longest_match([x1, x2], "host.a.example.org.") == (x2, "a.example.org.")
    assert longest_match([x1], "other.net.") is None
    assert longest_match([x1, x2], "ExAmPlE.OrG.") == (x1, "example.org.")   # case-insensitive
    assert longest_match([x1], "notexample.org.") is None
    root = Xfr((".",), ("*",))
    assert longest_match([root, x1], "b.example.org.") == (x1, "example.org.")
    assert longest_match([root, x1], "example.net.") == (root, ".")


def test_to_admits() -> None:
    # TestTransferNotAllowed: to 1.2.3.4 refuses other clients; `*` admits all
    x = _conf("transfer {\n    to 1.2.3.4 [2001:db8::1]:5300 [fe80::1%eth0]\n}").xfrs[0]
    assert x.admits("1.2.3.4") and x.admits("2001:db8:0::1") and x.admits("fe80::1")
    assert x.admits("::ffff:1.2.3.4")                 # a dual-stack socket's IPv4 client
    assert not x.admits("1.2.3.5") and not x.admits(None)
    assert _conf("transfer {\n    to *\n}").xfrs[0].admits(None)


def test_readme_says_notify_is_not_sent() -> None:
    from pathlib import Path

    import fastdns.plugins.transfer as pkg

    text = (Path(pkg.__file__).parent / "README.md").read_text()
    assert "## Differences from CoreDNS" in text and "No NOTIFY" in text
