"""``reload [INTERVAL] [JITTER]``: re-read the Corefile when it changes."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, parse_duration

__all__ = ["ReloadConf", "parse", "ONCE"]

ONCE = True
MIN_INTERVAL = 2.0
MIN_JITTER = 1.0


@dataclass(frozen=True)
class ReloadConf:
    """Check every ``interval`` seconds, +/- up to ``jitter``/2 (jitter capped at interval/2)."""

    interval: float = 30.0
    jitter: float = 15.0


def parse(d: Dispenser) -> ReloadConf:
    """Parse ``reload [INTERVAL] [JITTER]``."""
    expect_args(d.name, d.args, 0, 2, "reload [INTERVAL] [JITTER]")
    for sub in d.block():
        raise d.unknown(sub)
    interval, jitter = 30.0, 15.0
    if d.args:
        interval = parse_duration(d.args[0], what="reload interval", minimum=MIN_INTERVAL)
    if len(d.args) > 1:
        jitter = parse_duration(d.args[1], what="reload jitter")
        if 0 < jitter < MIN_JITTER:
            raise d.args[1].error(f"jitter value must be 0 or greater or equal to {MIN_JITTER:g}s")
    return ReloadConf(interval, min(jitter, interval / 2))
