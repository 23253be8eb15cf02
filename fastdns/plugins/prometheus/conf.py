"""``prometheus [ADDRESS]`` → HTTP /metrics endpoint settings."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, no_args, parse_host_port

__all__ = ["PrometheusConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class PrometheusConf:
    """Listen on ``host:port`` (host "" = all addresses); ``zones`` label the metrics."""

    host: str = ""
    port: int = 9153
    zones: tuple[str, ...] = (".",)

    @property
    def address(self) -> str:
        """``host:port`` as written in a Corefile."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse(d: Dispenser) -> PrometheusConf:
    """Parse ``prometheus [ADDRESS]``."""
    expect_args(d.name, d.args, 0, 1, "prometheus [ADDRESS]")
    host, port = parse_host_port(d.args[0], what="prometheus address") if d.args else ("", 9153)
    for sub in d.block():
        if sub.name.text == "runtime_metrics":
            no_args(sub)  # Go runtime metrics: nothing to do in Python
        elif sub.name.text == "tls":
            raise sub.name.error("prometheus: 'tls' is not supported by fastdns")
        else:
            raise d.unknown(sub)
    return PrometheusConf(host, port, d.server_zones)
