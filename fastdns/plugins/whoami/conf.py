"""``whoami``: answer every query with the client's address and port (no arguments)."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args

__all__ = ["WhoamiConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class WhoamiConf:
    """No settings."""


def parse(d: Dispenser) -> WhoamiConf:
    """Parse ``whoami``."""
    expect_args(d.name, d.args, 0, 0, "whoami")
    for sub in d.block():
        raise d.unknown(sub)
    return WhoamiConf()
