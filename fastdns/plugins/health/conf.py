"""``health [ADDRESS] { lameduck DURATION }`` → HTTP /health endpoint settings."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, parse_duration, parse_host_port

__all__ = ["HealthConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class HealthConf:
    """Listen on ``host:port`` (host "" = all addresses); ``lameduck`` seconds on shutdown."""

    host: str = ""
    port: int = 8080
    lameduck: float = 0.0

    @property
    def address(self) -> str:
        """``host:port`` as written in a Corefile."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse(d: Dispenser) -> HealthConf:
    """Parse ``health [ADDRESS] { lameduck DURATION }``."""
    expect_args(d.name, d.args, 0, 1, "health [ADDRESS]")
    host, port = parse_host_port(d.args[0], what="health address") if d.args else ("", 8080)
    lameduck = 0.0
    for sub in d.block():
        if sub.name.text != "lameduck":
            raise d.unknown(sub)
        expect_args(sub.name, sub.args, 1, 1, "lameduck DURATION")
        lameduck = parse_duration(sub.args[0], what="lameduck duration")
    return HealthConf(host, port, lameduck)
