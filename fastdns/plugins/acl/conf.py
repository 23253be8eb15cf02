"""``acl [ZONES...] { ACTION [type QTYPE...|*] [net SOURCE...|*] ... }``: source/qtype policies.

**ACTION** is ``allow``, ``block``, ``filter`` or ``drop`` (any case). ``type``
and ``net`` sections (any case, in any order, each may repeat) list query
types (dnspython names or ``TYPEnnn``) and sources (CIDRs, host bits
allowed, or single addresses); ``*`` or an omitted section matches all.
**ZONES** default to the server block's.

Each ``acl`` line is one :class:`AclRule`; several lines in a server block
are one plugin whose rules are tried in Corefile order (:func:`merge`), as
in CoreDNS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dns.rdatatype

from fastdns.config.dispenser import Dispenser
from fastdns.config.lexer import Token
from fastdns.config.parser import Directive

__all__ = ["AclConf", "AclRule", "AclPolicy", "ACTIONS", "parse", "merge", "ONCE"]

ONCE = False  # CoreDNS: "can be used multiple times per Server Block"
ACTIONS = ("allow", "block", "filter", "drop")
_SECTIONS = ("type", "net")
_PREFIX = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class AclPolicy:
    """One ``ACTION ...`` line.

    ``qtypes`` are the query types matched (sorted ints), None for every type;
    ``nets`` the source networks matched (canonical ``ADDR/LEN`` strings,
    host bits cleared, in Corefile order without duplicates), None for every
    source, IPv4 and IPv6.
    """

    action: str
    qtypes: tuple[int, ...] | None = None
    nets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AclRule:
    """One ``acl`` directive: its zones and its policies in Corefile order."""

    zones: tuple[str, ...] = (".",)
    policies: tuple[AclPolicy, ...] = ()


@dataclass(frozen=True)
class AclConf:
    """Every ``acl`` directive of a server block, in Corefile order."""

    rules: tuple[AclRule, ...] = ()


def _qtype(tok: Token) -> int:
    try:
        value = dns.rdatatype.from_text(tok.text)
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise tok.error(f"unexpected token {tok.text!r}; expect a legal QTYPE") from None
    if value == 0:
        raise tok.error(f"unexpected token {tok.text!r}; expect a legal QTYPE "
                        "(use '*' to match every type)")
    return int(value)


def _net(tok: Token) -> str:
    """A CIDR or a single address, checked as Go's net.ParseCIDR checks it
    (no zone, a decimal prefix length)."""
    text = tok.text
    addr, slash, prefix = text.partition("/")
    try:
        if "%" in addr or (slash and not _PREFIX.fullmatch(prefix)):
            raise ValueError
        ip = ipaddress.ip_address(addr)
        net = ipaddress.ip_network(f"{ip}/{int(prefix) if slash else ip.max_prefixlen}",
                                   strict=False)
    except ValueError:
        raise tok.error(f"illegal CIDR notation {text!r}") from None
    return str(net)


def _policy(sub: Directive) -> AclPolicy:
    action = sub.name.text.lower()
    if action not in ACTIONS:
        raise sub.name.error(f"unexpected token {sub.name.text!r}; "
                             "expect 'allow', 'block', 'filter' or 'drop'")
    qtypes: set[int] | None = set()
    nets: dict[str, None] | None = {}
    has_type = has_net = False
    args: Sequence[Token] = sub.args
    i = 0
    while i < len(args):
        head = args[i]
        section = head.text.lower()
        if section not in _SECTIONS:
            raise head.error(f"unexpected token {head.text!r}; expect 'type' or 'net'")
        j = i + 1
        while j < len(args) and args[j].text.lower() not in _SECTIONS:
            j += 1
        values = args[i + 1:j]
        if not values:
            raise head.error(f"no token specified in {section!r} section")
        i = j
        if section == "type":
            has_type = True
            for tok in values:
                if tok.text == "*":
                    qtypes = None
                else:
                    value = _qtype(tok)
                    if qtypes is not None:
                        qtypes.add(value)
        else:
            has_net = True
            for tok in values:
                if tok.text == "*":
                    nets = None
                else:
                    value = _net(tok)
                    if nets is not None:
                        nets[value] = None
    return AclPolicy(action,
                     tuple(sorted(qtypes)) if has_type and qtypes is not None else None,
                     tuple(nets) if has_net and nets is not None else None)


def parse(d: Dispenser) -> AclConf:
    """Parse one ``acl`` directive (one rule)."""
    zones = d.zones_or_server(d.args)
    return AclConf((AclRule(zones, tuple(_policy(sub) for sub in d.block())),))


def merge(confs: list[AclConf]) -> AclConf:
    """Several ``acl`` lines in one server block: all their rules, in order."""
    return AclConf(tuple(r for c in confs for r in c.rules))
