"""The cursor plugin parsers use, and argument validators with precise errors.

A plugin's ``parse(d: Dispenser)`` reads ``d.args`` (the tokens after the
directive name on its line) and iterates ``d.block()`` (its ``{ … }``
sub-directives). Every error is a :class:`ConfigError` located at the token
that caused it (``file:line:col``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from fastdns.config.address import ZoneSyntaxError, parse_port, zones_from_text
from fastdns.config.lexer import Token
from fastdns.config.parser import Directive
from fastdns.errors import ConfigError

__all__ = ["Dispenser", "parse_duration", "parse_int", "parse_ip", "parse_cidr",
           "parse_host_port", "parse_zones", "expect_args", "parse_fallthrough", "no_args"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(tok: Token, *, what: str = "duration", minimum: float | None = 0.0,
                   maximum: float | None = None) -> float:
    """A Go-style duration (``5s``, ``1m30s``, ``250ms``, ``0``) in seconds."""
    text = tok.text
    body = text[1:] if text[:1] in "+-" else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        value = 0.0
    else:
        pos, value = 0, 0.0
        while pos < len(body):
            m = _DUR_PART.match(body, pos)
            if m is None:
                raise tok.error(f"invalid {what} {text!r}: expected a duration like 5s, 250ms or 1m30s")
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not body:
            raise tok.error(f"invalid {what} {text!r}: expected a duration like 5s")
    value *= sign
    if minimum is not None and value < minimum:
        raise tok.error(f"invalid {what} {text!r}: must not be less than {minimum:g}s")
    if maximum is not None and value > maximum:
        raise tok.error(f"invalid {what} {text!r}: must not be more than {maximum:g}s")
    return value


def parse_int(tok: Token, *, what: str = "number", minimum: int | None = None,
              maximum: int | None = None) -> int:
    """A decimal integer within [minimum, maximum]."""
    text = tok.text
    if not re.fullmatch(r"[+-]?\d+", text):
        raise tok.error(f"invalid {what} {text!r}: not an integer")
    value = int(text)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        lo = "" if minimum is None else str(minimum)
        hi = "" if maximum is None else str(maximum)
        raise tok.error(f"invalid {what} {value}: must be in range [{lo}, {hi}]")
    return value


def parse_ip(tok: Token, *, what: str = "IP address") -> str:
    """A literal IPv4/IPv6 address, returned in canonical form."""
    try:
        return str(ipaddress.ip_address(tok.text))
    except ValueError:
        raise tok.error(f"invalid {what} {tok.text!r}") from None


def parse_cidr(tok: Token) -> str:
    """An IP network ``ADDR/LEN`` (host bits allowed, as Go's ParseCIDR)."""
    try:
        return str(ipaddress.ip_network(tok.text, strict=False))
    except ValueError:
        raise tok.error(f"invalid CIDR {tok.text!r}") from None


def parse_host_port(tok: Token, *, default_host: str = "", what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` / ``:PORT`` / ``[V6]:PORT`` as Go's net.SplitHostPort requires."""
    text = tok.text
    if text.startswith("["):
        end = text.find("]")
        if end == -1 or text[end + 1:end + 2] != ":":
            raise tok.error(f"invalid {what} {text!r}: expected [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2:]
    else:
        if text.count(":") != 1:
            raise tok.error(f"invalid {what} {text!r}: expected HOST:PORT or :PORT")
        host, port_text = text.split(":")
    try:
        port = parse_port(port_text)
    except ZoneSyntaxError as exc:
        raise tok.error(f"invalid {what} {text!r}: {exc}") from None
    return (host or default_host), port


def parse_zones(tokens: Sequence[Token]) -> tuple[str, ...]:
    """Zone arguments (names or CIDRs) → normalized zones; a ``:port`` suffix is dropped."""
    out: list[str] = []
    for tok in tokens:
        text = tok.text.split("://", 1)[-1]
        colon = text.rfind(":")
        if colon != -1 and text[colon + 1:].isdigit() and "/" not in text[colon:] \
                and not ("/" in text and colon < text.find("/")):
            text = text[:colon]
        try:
            out.extend(zones_from_text(text))
        except ZoneSyntaxError as exc:
            raise tok.error(str(exc)) from None
    return tuple(out)


def expect_args(owner: Token, args: Sequence[Token], minimum: int, maximum: int | None,
                usage: str) -> None:
    """Raise a located error unless ``minimum <= len(args) <= maximum``."""
    if len(args) < minimum or (maximum is not None and len(args) > maximum):
        at = args[maximum] if maximum is not None and len(args) > maximum else owner
        raise at.error(f"wrong number of arguments for {owner.text!r} (usage: {usage})")


@dataclass
class Dispenser:
    """One directive occurrence as a plugin parser sees it."""

    directive: Directive
    server_zones: tuple[str, ...] = (".",)
    base_dir: str = "."

    @property
    def name(self) -> Token:
        """The directive's own token (``forward``, ``cache``…)."""
        return self.directive.name

    @property
    def args(self) -> tuple[Token, ...]:
        """Tokens after the directive name on its line (before ``{``)."""
        return self.directive.args

    def block(self, *, nested: bool = False) -> Iterator[Directive]:
        """The sub-directives in ``{ … }``; a nested block is an error unless ``nested``."""
        for sub in self.directive.block or ():
            if sub.block is not None and not nested:
                assert sub.open_brace is not None
                raise sub.open_brace.error(
                    f"unexpected block after {sub.name.text!r} in {self.name.text!r}")
            yield sub

    def unknown(self, sub: Directive) -> ConfigError:
        """The error for a sub-directive the plugin does not know."""
        return sub.name.error(f"unknown property {sub.name.text!r} in {self.name.text!r}")

    def error(self, message: str, at: Token | None = None) -> ConfigError:
        """A ConfigError located at ``at`` (default: the directive name)."""
        return (at or self.name).error(message)

    def path(self, tok: Token) -> str:
        """A file argument, relative paths taken from the Corefile's directory."""
        return os.path.normpath(tok.text if os.path.isabs(tok.text)
                                else os.path.join(self.base_dir, tok.text))

    def zones_or_server(self, tokens: Sequence[Token]) -> tuple[str, ...]:
        """Zones from arguments, else the server block's zones (CoreDNS's
        OriginsFromArgsOrServerBlock)."""
        return parse_zones(tokens) if tokens else self.server_zones


def parse_fallthrough(tokens: Sequence[Token]) -> tuple[str, ...]:
    """``fallthrough [ZONES…]``: the zones, ``(".",)`` when none are given."""
    return parse_zones(tokens) if tokens else (".",)


def no_args(sub: Directive) -> None:
    """A flag sub-directive (``force_tcp``, ``keepttl``…) takes no argument."""
    if sub.args:
        raise sub.args[0].error(f"{sub.name.text!r} takes no arguments")
