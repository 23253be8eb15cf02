"""``transfer [ZONES...] { to ADDRESS... }`` (CoreDNS's ``parseTransfer``).

Several ``transfer`` lines in one server block are kept together, as CoreDNS
keeps one ``xfr`` per line in one plugin: a transfer question goes to the line
whose zone is the longest match (:func:`longest_match`).  Each line needs at
least one ``to`` (``'to' is required``, as CoreDNS); ``to`` may be repeated.
``*`` admits every client; an address (``1.2.3.4``, ``1.2.3.4:5300``,
``[12:34::56]:53``) admits that IP, whatever port it carries (CoreDNS compares
the host part only).  ``source`` (the address NOTIFY messages are sent from)
is refused: fastdns sends no NOTIFY.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser

__all__ = ["TransferConf", "Xfr", "parse", "merge", "ONCE", "ANY", "longest_match"]

# CoreDNS: every transfer line of a block is one xfr of the one plugin.
ONCE = False

ANY = "*"


@dataclass(frozen=True)
class Xfr:
    """One ``transfer`` line: its zones (lower-case, absolute) and its ``to`` list.

    ``to`` holds CoreDNS's normalized ``HOST:PORT`` strings (``*`` as is);
    ``allowed`` the IPs they admit (canonical text), or ``("*",)``."""

    zones: tuple[str, ...]
    to: tuple[str, ...]

    @property
    def allowed(self) -> frozenset[str]:
        out = set()
        for t in self.to:
            if t == ANY:
                out.add(ANY)
                continue
            host = t.rsplit(":", 1)[0].strip("[]")
            out.add(_canonical(host))
        return frozenset(out)

    def admits(self, ip: str | None) -> bool:
        """CoreDNS's ``xfr.allowed``: ``*``, or the client's IP is one of ``to``."""
        allowed = self.allowed
        if ANY in allowed:
            return True
        return ip is not None and _canonical(ip) in allowed


@dataclass(frozen=True)
class TransferConf:
    """Every ``transfer`` line of a block, in Corefile order."""

    xfrs: tuple[Xfr, ...]

    @property
    def zones(self) -> tuple[str, ...]:
        """All zones of all lines (deduplicated, in order)."""
        return tuple(dict.fromkeys(z for x in self.xfrs for z in x.zones))


def _canonical(host: str) -> str:
    """An IP as text: canonical form, the zone (``%eth0``) dropped, IPv4-mapped
    IPv6 as IPv4 (what Go's ``RemoteAddr`` gives for a dual-stack socket)."""
    host = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _host_port(tok) -> str:  # type: ignore[no-untyped-def]
    """CoreDNS's ``parse.HostPort(host, "53")``: ``HOST:PORT`` with an IP host."""
    text = tok.text
    host, port = text, "53"
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise tok.error(f"must specify an IP address: `{text}'")
        host = text[1:end]
        rest = text[end + 1:]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise tok.error(f"invalid address {text!r}: expected [IPv6]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
        if not port.isdigit():
            raise tok.error(f"invalid address {text!r}: bad port")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise tok.error(f"must specify an IP address: `{host}'") from None
    if not 0 <= int(port) <= 65535:
        raise tok.error(f"invalid address {text!r}: port out of range")
    return f"[{host}]:{port}" if ip.version == 6 else f"{host}:{port}"


def parse(d: Dispenser) -> TransferConf:
    """Parse one ``transfer`` directive (one line, with its block)."""
    zones = tuple(z.lower() for z in d.zones_or_server(d.args))
    to: list[str] = []
    for sub in d.block():
        name = sub.name.text
        if name == "to":
            if not sub.args:
                raise sub.name.error("wrong argument count or unexpected line ending after 'to'")
            for tok in sub.args:
                to.append(ANY if tok.text == ANY else _host_port(tok))
        elif name == "source":
            raise sub.name.error("'source' sets the address NOTIFY messages are sent from; "
                                 "fastdns sends no NOTIFY: remove it")
        else:
            raise d.unknown(sub)
    if not to:
        raise d.error("'to' is required")
    return TransferConf((Xfr(zones, tuple(to)),))


def merge(confs: list[TransferConf]) -> TransferConf:
    """Several ``transfer`` lines in one block: all their zones and ACLs, in order."""
    return TransferConf(tuple(x for c in confs for x in c.xfrs))


def longest_match(xfrs: Sequence[Xfr], name: str) -> tuple[Xfr, str] | None:
    """CoreDNS's ``longestMatch``: the line whose zone is the longest suffix of
    ``name`` (equal lengths: the greater zone), with that zone; None if none."""
    name = name.lower()
    if not name.endswith("."):
        name += "."
    best: tuple[Xfr, str] | None = None
    for x in xfrs:
        z = _matches(x.zones, name)
        if z is None:
            continue
        if best is None or len(z) > len(best[1]) or (len(z) == len(best[1]) and z > best[1]):
            best = (x, z)
    return best


def _matches(zones: Sequence[str], name: str) -> str | None:
    """plugin.Zones.Matches: the longest of ``zones`` that ``name`` is in."""
    best = None
    for z in zones:
        if z == "." or name == z or name.endswith("." + z):
            if best is None or len(z) > len(best):
                best = z
    return best
