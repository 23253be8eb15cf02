"""``loadbalance [round_robin] { prefer CIDR… }``: shuffle A/AAAA/MX records per answer."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, parse_cidr

__all__ = ["LoadbalanceConf", "parse", "ONCE"]

ONCE = True


@dataclass(frozen=True)
class LoadbalanceConf:
    """``policy`` is ``round_robin`` (a random shuffle, as CoreDNS); ``prefer`` subnets go first."""

    policy: str = "round_robin"
    prefer: tuple[str, ...] = ()


def parse(d: Dispenser) -> LoadbalanceConf:
    """Parse ``loadbalance [round_robin]``."""
    if d.args and d.args[0].text == "weighted":
        raise d.args[0].error("loadbalance: the 'weighted' policy is not supported by fastdns")
    if d.args and d.args[0].text != "round_robin":
        raise d.args[0].error(f"unknown loadbalance policy {d.args[0].text!r}")
    expect_args(d.name, d.args, 0, 1, "loadbalance [round_robin]")
    prefer: list[str] = []
    for sub in d.block():
        if sub.name.text != "prefer":
            raise d.unknown(sub)
        expect_args(sub.name, sub.args, 1, None, "prefer CIDR...")
        prefer.extend(parse_cidr(a) for a in sub.args)
        # the C shuffle does not order by subnet yet: refuse rather than ignore it
        raise sub.name.error("loadbalance: 'prefer' is not supported by fastdns yet")
    return LoadbalanceConf("round_robin", tuple(prefer))
