"""``ready [ADDRESS] { monitor until-ready|continuously }`` → HTTP /ready endpoint settings."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, parse_host_port

__all__ = ["ReadyConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class ReadyConf:
    """Listen on ``host:port`` (host "" = all addresses)."""

    host: str = ""
    port: int = 8181
    monitor: str = "until-ready"

    @property
    def address(self) -> str:
        """``host:port`` as written in a Corefile."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse(d: Dispenser) -> ReadyConf:
    """Parse ``ready [ADDRESS]``."""
    expect_args(d.name, d.args, 0, 1, "ready [ADDRESS]")
    host, port = parse_host_port(d.args[0], what="ready address") if d.args else ("", 8181)
    monitor = "until-ready"
    for sub in d.block():
        if sub.name.text != "monitor":
            raise d.unknown(sub)
        expect_args(sub.name, sub.args, 1, 1, "monitor until-ready|continuously")
        if sub.args[0].text not in ("until-ready", "continuously"):
            raise sub.args[0].error(f"monitor type {sub.args[0].text!r} not supported")
        monitor = sub.args[0].text
    return ReadyConf(host, port, monitor)
