"""Server block keys: ``[scheme://]ZONE[:PORT]`` → zones, port, transport.

As CoreDNS (``core/dnsserver/register.go`` and ``plugin.SplitHostPort``):

* a trailing ``:DIGITS`` is the port; without it the transport's default;
* a key that parses as a CIDR (``10.0.0.0/24``, ``fd00::/64``) becomes its
  reverse zones, split on octet (IPv4) or nibble (IPv6) boundaries, so
  ``10.0.0.0/23`` is ``0.0.10.in-addr.arpa.`` and ``1.0.10.in-addr.arpa.``;
* zones are lower-cased and fully qualified (trailing dot).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.name

__all__ = ["ZoneAddr", "parse_key", "normalize_zone", "zones_from_text", "TRANSPORTS",
           "ZoneSyntaxError"]

#: transport scheme → default port (only ``dns`` is served by fastdns).
TRANSPORTS: dict[str, int] = {"dns": 53, "tls": 853, "quic": 853, "grpc": 443,
                              "https": 443, "https3": 443}

_MAX_REVERSE_SPLIT = 256


class ZoneSyntaxError(ValueError):
    """A key or zone is malformed; the caller adds the location."""


@dataclass(frozen=True, slots=True)
class ZoneAddr:
    """One zone a server block answers for, on one port and transport."""

    zone: str
    port: int
    transport: str


def _split_transport(key: str) -> tuple[str, str]:
    if "://" in key:
        scheme, rest = key.split("://", 1)
        scheme = scheme.lower()
        if scheme not in TRANSPORTS:
            raise ZoneSyntaxError(f"unknown transport {scheme!r} in {key!r}")
        return scheme, rest
    return "dns", key


def parse_port(text: str) -> int:
    """A port number 1..65535 from text, or :class:`ZoneSyntaxError`."""
    if not text.isdigit():
        raise ZoneSyntaxError(f"invalid port {text!r}: not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ZoneSyntaxError(f"invalid port {port}: must be in 1..65535")
    return port


def _reverse_zones(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    step = 8 if net.version == 4 else 4
    prefix = net.prefixlen
    target = -(-prefix // step) * step  # round up to the boundary
    if (1 << (target - prefix)) > _MAX_REVERSE_SPLIT:
        raise ZoneSyntaxError(f"CIDR {net} expands to too many reverse zones")
    subnets = [net] if target == prefix else list(net.subnets(new_prefix=target))
    zones = []
    for sub in subnets:
        labels_kept = target // step
        full = sub.network_address.reverse_pointer.split(".")
        arpa = 2  # "in-addr"/"ip6" + "arpa"
        host_labels = len(full) - arpa
        zones.append(".".join(full[host_labels - labels_kept:]) + ".")
    return zones


def normalize_zone(text: str) -> str:
    """Lower-case, fully qualified, validated domain name (``.`` for root)."""
    if text in ("", "."):
        return "."
    if len(text) > 255:
        raise ZoneSyntaxError(f"zone is too long: {len(text)} > 255")
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise ZoneSyntaxError(f"zone {text!r} is not a valid domain name: {exc}") from None
    return name.to_text().lower()


def zones_from_text(text: str) -> list[str]:
    """A zone, or a CIDR expanded to its reverse zones (no port, no scheme)."""
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
        else:
            return _reverse_zones(net)
    return [normalize_zone(text)]


def parse_key(key: str, default_port: int = 53) -> list[ZoneAddr]:
    """Parse one server block key; the port defaults to ``default_port`` for dns://."""
    transport, rest = _split_transport(key)
    port: int | None = None
    colon = rest.rfind(":")
    if colon != -1:
        tail = rest[colon + 1:]
        is_v6_cidr = "/" in rest and colon < rest.find("/")
        if not is_v6_cidr:
            if tail == "":
                raise ZoneSyntaxError(f"expecting a port after the last colon in {key!r}")
            port = parse_port(tail)
            rest = rest[:colon]
    if port is None:
        port = default_port if transport == "dns" else TRANSPORTS[transport]
    return [ZoneAddr(z, port, transport) for z in zones_from_text(rest)]
