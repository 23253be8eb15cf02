"""``bufsize [SIZE]``: cap the EDNS0 UDP payload size a query advertises.

**SIZE** is 512..4096 (RFC 6891), default 1232 (DNS Flag Day 2020). Once per
server block; no block properties.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, parse_int

__all__ = ["BufsizeConf", "parse", "ONCE", "DEFAULT_SIZE", "MIN_SIZE", "MAX_SIZE"]

ONCE = True  # CoreDNS reads only the first bufsize line of a block; a second one is refused
DEFAULT_SIZE = 1232
MIN_SIZE = 512
MAX_SIZE = 4096


@dataclass(frozen=True)
class BufsizeConf:
    """A query whose OPT record advertises more than ``size`` bytes is treated
    as if it advertised ``size``; smaller sizes and queries without EDNS0 are
    left alone."""

    size: int = DEFAULT_SIZE


def parse(d: Dispenser) -> BufsizeConf:
    """Parse ``bufsize [SIZE]``."""
    expect_args(d.name, d.args, 0, 1, "bufsize [SIZE]")
    for sub in d.block():
        raise d.unknown(sub)
    if not d.args:
        return BufsizeConf()
    return BufsizeConf(parse_int(d.args[0], what="bufsize", minimum=MIN_SIZE, maximum=MAX_SIZE))
