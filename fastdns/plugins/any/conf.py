"""``any``: answer ANY queries with a short HINFO record (RFC 8482); no arguments."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args

__all__ = ["AnyConf", "parse", "ONCE"]

ONCE = True  # CoreDNS reads only the first any line of a block; a second one is refused


@dataclass(frozen=True)
class AnyConf:
    """No settings."""


def parse(d: Dispenser) -> AnyConf:
    """Parse ``any``."""
    expect_args(d.name, d.args, 0, 0, "any")
    for sub in d.block():
        raise d.unknown(sub)
    return AnyConf()
