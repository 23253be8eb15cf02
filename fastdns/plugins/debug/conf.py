"""``debug``: log more, and dump the packet of a failing query (no arguments)."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args

__all__ = ["DebugConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class DebugConf:
    """No settings."""


def parse(d: Dispenser) -> DebugConf:
    """Parse ``debug``."""
    expect_args(d.name, d.args, 0, 0, "debug")
    for sub in d.block():
        raise d.unknown(sub)
    return DebugConf()
