"""``dns64 [PREFIX]`` or ``dns64 { prefix PREFIX; translate_all; allow_ipv4 }``:
synthesise AAAA records from A records (RFC 6147).

**PREFIX** is an IPv6 prefix of a length RFC 6052 allows (/32, /40, /48, /56, /64,
/96), default ``64:ff9b::/96`` (the well-known prefix).  Several ``dns64`` lines
in a server block are one plugin, as in CoreDNS (its setup reads every line of
the block): the last prefix written wins, ``translate_all`` and ``allow_ipv4``
hold if any line sets them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, no_args
from fastdns.config.lexer import Token

__all__ = ["Dns64Conf", "parse", "merge", "parse_prefix", "ONCE", "DEFAULT_PREFIX",
           "PREFIX_LENGTHS"]

ONCE = False  # CoreDNS's setup loops over every dns64 line of a block: one plugin

DEFAULT_PREFIX = "64:ff9b::/96"
#: The prefix lengths of RFC 6052 section 2.2 (CoreDNS also takes /72, /80 and /88).
PREFIX_LENGTHS = (32, 40, 48, 56, 64, 96)

_USAGE = "dns64 [PREFIX] or dns64 { prefix PREFIX translate_all allow_ipv4 }"


@dataclass(frozen=True)
class Dns64Conf:
    """``prefix``: the IPv6 prefix (text, host bits cleared: ``64:ff9b::/96``) the
    IPv4 addresses are embedded in; ``translate_all``: translate AAAA answers that
    have AAAA records too (CoreDNS's "not comply with 5.1.1"); ``allow_ipv4``:
    translate for clients that asked over IPv4 as well (by default only IPv6
    clients' queries are translated).

    A single line's conf holds ``prefix=None`` when the line does not give one; the
    conf in a plan (after :func:`merge`) always holds a prefix."""

    prefix: str | None = DEFAULT_PREFIX
    translate_all: bool = False
    allow_ipv4: bool = False


def parse_prefix(tok: Token) -> str:
    """An RFC 6052 prefix (``64:ff9b::/96``) → its canonical text, or a located error."""
    text = tok.text
    if "/" not in text or "%" in text:
        raise tok.error(f"invalid CIDR address: {text}")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise tok.error(f"invalid CIDR address: {text}") from None
    if net.version != 6:
        raise tok.error(f"invalid prefix {text!r}: dns64 needs an IPv6 prefix")
    if net.prefixlen not in PREFIX_LENGTHS:
        raise tok.error(f"invalid prefix length {text!r}: RFC 6052 allows /32, /40, /48, /56, "
                        "/64 and /96")
    if net.network_address.packed[8] != 0:
        raise tok.error(f"invalid prefix {text!r}: bits 64 to 71 (the u octet) must be zero "
                        "(RFC 6052 section 2.2)")
    return str(net)


def parse(d: Dispenser) -> Dns64Conf:
    """Parse one ``dns64`` line."""
    expect_args(d.name, d.args, 0, 1, _USAGE)
    prefix = parse_prefix(d.args[0]) if d.args else None
    translate_all = allow_ipv4 = False
    for sub in d.block():
        if d.args:
            # CoreDNS's parser skips the block of a line that has a PREFIX: refused
            # rather than read differently (or ignored) here
            raise sub.name.error(f"a {d.name.text!r} line with a PREFIX argument takes no "
                                 "block (CoreDNS ignores it); write 'prefix PREFIX' inside "
                                 "the block instead")
        name = sub.name.text
        if name == "prefix":
            expect_args(sub.name, sub.args, 1, 1, "prefix PREFIX")
            prefix = parse_prefix(sub.args[0])
        elif name == "translate_all":
            no_args(sub)
            translate_all = True
        elif name == "allow_ipv4":
            no_args(sub)
            allow_ipv4 = True
        else:
            raise d.unknown(sub)
    return Dns64Conf(prefix, translate_all, allow_ipv4)


def merge(confs: list[Dns64Conf]) -> Dns64Conf:
    """Every ``dns64`` line of a server block as one conf, as CoreDNS's setup reads
    them: the last prefix given wins; a flag set on any line holds."""
    prefix = DEFAULT_PREFIX
    for c in confs:
        if c.prefix is not None:
            prefix = c.prefix
    return Dns64Conf(prefix, any(c.translate_all for c in confs),
                     any(c.allow_ipv4 for c in confs))
