"""``hosts [FILE [ZONES…]] { inline entries; ttl; reload; no_reverse; fallthrough;
fallthrough_unsupported }``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastdns.config.dispenser import (
    Dispenser, no_args, parse_duration, parse_fallthrough, parse_int, parse_zones,
)

__all__ = ["HostsConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class HostsConf:
    """A hosts file (read by the server, not by the parser) plus inline entries.

    ``inline`` holds ``(ip, (names…))`` pairs in Corefile order.
    """

    path: str = "/etc/hosts"
    zones: tuple[str, ...] = (".",)
    inline: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ttl: int = 3600
    reload: float = 5.0
    no_reverse: bool = False
    fallthrough: tuple[str, ...] | None = None
    fallthrough_unsupported: bool = False   # existing names: types other than A/AAAA/PTR fall through


def parse(d: Dispenser) -> HostsConf:
    """Parse one ``hosts`` directive."""
    kw: dict[str, object] = {}
    if d.args:
        kw["path"] = d.path(d.args[0])
    kw["zones"] = d.zones_or_server(d.args[1:])
    inline: list[tuple[str, tuple[str, ...]]] = []
    unsupported_at = None
    for sub in d.block():
        name, a = sub.name.text, sub.args
        if name == "fallthrough":
            kw["fallthrough"] = parse_fallthrough(a)
        elif name == "fallthrough_unsupported":
            no_args(sub)
            kw["fallthrough_unsupported"] = True
            unsupported_at = sub.name
        elif name == "no_reverse":
            no_args(sub)
            kw["no_reverse"] = True
        elif name == "ttl":
            if len(a) != 1:
                raise sub.name.error("ttl needs a time in seconds")
            kw["ttl"] = parse_int(a[0], what="ttl", minimum=1, maximum=65535)
        elif name == "reload":
            if len(a) != 1:
                raise sub.name.error("reload needs a duration (zero seconds to disable)")
            kw["reload"] = parse_duration(a[0], what="reload duration")
        else:
            try:
                ip = str(ipaddress.ip_address(name.split("%", 1)[0]))
            except ValueError:
                raise d.unknown(sub) from None
            if not a:
                raise sub.name.error(f"hosts entry {name!r} has no host name")
            inline.append((ip, tuple(z.rstrip(".") for z in parse_zones(a))))
    if unsupported_at is not None and kw.get("fallthrough") is None:
        raise unsupported_at.error("fallthrough_unsupported requires fallthrough")
    kw["inline"] = tuple(inline)
    return HostsConf(**kw)  # type: ignore[arg-type]
