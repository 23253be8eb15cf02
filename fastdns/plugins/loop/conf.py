"""``loop``: detect a forwarding loop at start-up (no arguments)."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args

__all__ = ["LoopConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class LoopConf:
    """The zone the self-query is sent under (the server block's first zone)."""

    zone: str = "."


def parse(d: Dispenser) -> LoopConf:
    """Parse ``loop``."""
    expect_args(d.name, d.args, 0, 0, "loop")
    for sub in d.block():
        raise d.unknown(sub)
    return LoopConf(d.server_zones[0] if d.server_zones else ".")
