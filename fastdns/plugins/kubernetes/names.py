"""Name helpers shared by the compiler and the pod-name synthesiser.

All names are absolute, lower-case, with the trailing dot.
"""

from __future__ import annotations

import ipaddress

__all__ = ["ip_version", "dashed_ip", "undash", "reverse_name", "is_reverse_zone",
           "under", "zone_of"]

_REVERSE_SUFFIXES = ("in-addr.arpa.", "ip6.arpa.")


def ip_version(text: str) -> int:
    """4 or 6 for a valid IP address literal, 0 otherwise."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256
                               and (p == "0" or p[0] != "0") for p in parts):
        return 4
    if ":" not in text:
        return 0
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


def dashed_ip(ip: str) -> str:
    """CoreDNS's ``endpointHostname`` fallback: ``10-0-0-1``, ``fd00--1`` (``::`` end → ``-0``)."""
    if "." in ip:
        return ip.replace(".", "-")
    if ":" in ip:
        h = ip.replace(":", "-")
        return h + "0" if h.endswith("-") else h
    return ""


def undash(label: str) -> str:
    """CoreDNS's pod-label → IP text: three dashes and no ``--`` is IPv4, else IPv6."""
    if label.count("-") == 3 and "--" not in label:
        return label.replace("-", ".")
    return label.replace("-", ":")


def reverse_name(ip: str) -> str:
    """``d.c.b.a.in-addr.arpa.`` or the ip6.arpa nibble name, with the trailing dot."""
    if ":" not in ip:
        parts = ip.split(".")
        return ".".join(reversed(parts)) + ".in-addr.arpa."
    return ipaddress.ip_address(ip).reverse_pointer + "."


def is_reverse_zone(zone: str) -> bool:
    """Whether ``zone`` is in-addr.arpa. / ip6.arpa. or below them."""
    return zone in _REVERSE_SUFFIXES or zone.endswith(tuple("." + s for s in _REVERSE_SUFFIXES))


def under(name: str, zone: str) -> bool:
    """Whether ``name`` equals ``zone`` or is below it (``zone`` "." matches everything)."""
    return zone == "." or name == zone or name.endswith("." + zone)


def zone_of(name: str, zones: tuple[str, ...] | list[str]) -> str | None:
    """The longest of ``zones`` that ``name`` is in, or None."""
    best = None
    for z in zones:
        if under(name, z) and (best is None or len(z) > len(best)):
            best = z
    return best
