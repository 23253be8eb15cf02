"""Lexer, parser and address rules (CoreDNS/Caddy semantics)."""

from __future__ import annotations

import pytest

from fastdns.config import parse
from fastdns.config.address import parse_key
from fastdns.config.lexer import tokenize
from fastdns.errors import ConfigError


def _texts(text: str, env: dict[str, str] | None = None) -> list[tuple[str, int, int]]:
    return [(t.text, t.line, t.column) for t in tokenize(text, "f", env=env)]


def test_tokens_carry_line_and_column() -> None:
    assert _texts("\ufeff.:53 {\n\twhoami # comment\n}\n") == [
        (".:53", 1, 1), ("{", 1, 6), ("whoami", 2, 2), ("}", 3, 1)]


def test_quotes_escapes_and_comments() -> None:
    toks = tokenize('log . "a b \\"c\\" \\d" x#y\r\n"multi\nline" z', "f")
    assert [t.text for t in toks] == ["log", ".", 'a b "c" \\d', "x", "multi\nline", "z"]
    assert (toks[4].line, toks[4].end_line, toks[5].line) == (2, 3, 3)
    assert toks[2].quoted and not toks[1].quoted


@pytest.mark.parametrize("text,expected", [
    ("{$A}", "1"), ("x{$A}y{$B}", "x1y2"), ("{%A%}", "1"), ("{$MISSING}", ""),
    ("{$}", "{$}"), ("{$A", "{$A"), ("{%A%}-{$B}", "1-2"),
])
def test_env_substitution(text: str, expected: str) -> None:
    assert tokenize(text, "f", env={"A": "1", "B": "2"})[0].text == expected


def test_env_in_corefile() -> None:
    plan = parse("{$ZONE}:{$PORT} {\n    forward . {$UP}\n}\n",
                 env={"ZONE": "example.test", "PORT": "1053", "UP": "127.0.0.5"})
    (server,) = plan.servers
    assert (server.zones, server.port) == (("example.test.",), 1053)
    assert str(server.plugin("forward").to[0]) == "dns://127.0.0.5:53"


@pytest.mark.parametrize("key,zones,port", [
    (".", ["."], 53), ("Example.ORG", ["example.org."], 53), ("dns://a.b.:5353", ["a.b."], 5353),
    ("10.0.0.0/24", ["0.0.10.in-addr.arpa."], 53),
    ("10.0.0.0/23:1053", ["0.0.10.in-addr.arpa.", "1.0.10.in-addr.arpa."], 1053),
    ("10.1.2.3/8", ["10.in-addr.arpa."], 53),
    ("fd00::/64", ["0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."], 53),
    ("2001:db8::/31", ["8.b.d.0.1.0.0.2.ip6.arpa.", "9.b.d.0.1.0.0.2.ip6.arpa."], 53),
])
def test_keys(key: str, zones: list[str], port: int) -> None:
    assert [(z.zone, z.port) for z in parse_key(key)] == [(z, port) for z in zones]


def test_default_port_parameter() -> None:
    plan = parse(". {\n whoami\n}\nexample.test:53 {\n whoami\n}\n", default_port=5353)
    assert [s.port for s in plan.servers] == [5353, 53]


def test_blocks_share_a_port_and_longest_zone_wins() -> None:
    plan = parse("""
        . { whoami }
        cluster.local svc.cluster.local { whoami }
        example.test:1053 { whoami }
    """, env={})
    (li53, li1053) = plan.listeners
    assert (li53.port, li1053.port) == (53, 1053)
    assert [z for z, _ in li53.zones] == ["svc.cluster.local.", "cluster.local.", "."]
    assert li53.match("a.b.svc.cluster.local.") == 1
    assert li53.match("a.pod.cluster.local.") == 1
    assert li53.match("www.example.test.") == 0
    assert li1053.match("www.example.org.") is None
    assert plan.server_for("x.svc.cluster.local.", 53) is plan.servers[1]


def test_key_comma_continuation_and_lone_block() -> None:
    plan = parse("a.test,\n b.test:1053 {\n whoami\n}\n")
    assert plan.servers[0].zones == ("a.test.",) and plan.servers[1].zones == ("b.test.",)
    plan = parse("example.test\nwhoami\nlog\n")  # a single block without braces
    assert [p.name for p in plan.servers[0].plugins] == ["log", "whoami"]


def test_plugin_order_is_central_not_corefile_order() -> None:
    plan = parse(". {\n forward . 127.0.0.1\n cache\n log\n errors\n health\n bind 127.0.0.1\n}\n")
    assert [p.name for p in plan.servers[0].plugins] == [
        "bind", "health", "errors", "log", "cache", "forward"]
    assert plan.servers[0].bind == ("127.0.0.1",)


def test_several_forward_stanzas_and_bind_lines() -> None:
    plan = parse(". {\n forward example.test 127.0.0.2\n forward . 127.0.0.1\n"
                 " bind 127.0.0.1\n bind ::1 127.0.0.1\n}\n")
    server = plan.servers[0]
    assert [f.from_zone for f in server.plugins_named("forward")] == ["example.test.", "."]
    assert server.bind == ("127.0.0.1", "::1")
    assert len(plan.listeners) == 2


def test_snippets_and_nested_import() -> None:
    plan = parse("(a) {\n errors\n}\n(b) {\n import a\n log\n}\n. {\n import b\n}\n")
    assert [p.name for p in plan.servers[0].plugins] == ["errors", "log"]


@pytest.mark.parametrize("text,where,message", [
    (". {\n whoami\n}\n. {\n whoami\n}\n", "4:1", "zone . on dns port 53 is already defined at"),
    (". . {\n whoami\n}\n", "1:3", "zone . on dns port 53 is already defined"),
    ("tls://. {\n whoami\n}\n", "1:1", "transport tls:// is not supported"),
    ("(a) {\n log\n}\n(a) {\n log\n}\n", "4:1", "snippet 'a' is already defined"),
    (". {\n import\n}\n", "2:2", "import takes exactly one argument"),
    (". {\n forward . 127.0.0.1\n {\n force_tcp\n }\n}\n", "3:2", "unexpected '{'"),
    (". {\n health {\n lameduck 1s {\n }\n }\n}\n", "3:14", "unexpected block after 'lameduck'"),
    ("a..b {\n whoami\n}\n", "1:1", "zone 'a..b' is not a valid domain name"),
    (". {\n cache 0\n}\n", "2:8", "invalid cache TTL 0"),
    (". {\n whoami extra\n}\n", "2:9", "wrong number of arguments for 'whoami'"),
])
def test_errors(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, filename="C", env={})
    assert f"{info.value.line}:{info.value.column}" == where, str(info.value)
    assert info.value.message.startswith(message), str(info.value)
    assert info.value.file == "C"


def test_env_values_are_not_scanned_for_references() -> None:
    env = {"R": "{$R}x", "A": "{%B%}", "B": "2"}
    assert tokenize("{$R}", "f", env=env)[0].text == "{$R}x"
    assert tokenize("{$A}-{$B}", "f", env=env)[0].text == "{%B%}-2"
