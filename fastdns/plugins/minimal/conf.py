"""``minimal``: send only the answer section of positive answers; no arguments."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args

__all__ = ["MinimalConf", "parse", "ONCE"]

ONCE = True  # CoreDNS reads only the first minimal line of a block; a second one is refused


@dataclass(frozen=True)
class MinimalConf:
    """No settings."""


def parse(d: Dispenser) -> MinimalConf:
    """Parse ``minimal``."""
    expect_args(d.name, d.args, 0, 0, "minimal")
    for sub in d.block():
        raise d.unknown(sub)
    return MinimalConf()
