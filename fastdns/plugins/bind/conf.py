"""``bind ADDRESS|INTERFACE… { except ADDRESS|INTERFACE… }``: the addresses to listen on.

Interface names are resolved to their addresses when the Corefile is parsed
(IPv4 from the kernel, IPv6 from ``/proc/net/if_inet6``); an unknown name is an error.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args
from fastdns.config.lexer import Token

__all__ = ["BindConf", "parse", "merge", "interface_addresses", "ONCE"]

ONCE = False  # several bind lines are consolidated
_SIOCGIFADDR = 0x8915


@dataclass(frozen=True)
class BindConf:
    """The literal addresses to bind (``except`` already removed)."""

    addresses: tuple[str, ...] = ()


def interface_addresses(name: str) -> list[str]:
    """The IPv4 and IPv6 addresses of the network interface ``name`` (may be empty)."""
    out: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            out.append(socket.inet_ntoa(packed[20:24]))
        except OSError:
            pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 6 and fields[5] == name:
                    out.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    except OSError:
        pass
    return out


def _resolve(tokens: tuple[Token, ...] | list[Token]) -> list[str]:
    out: list[str] = []
    names = {n for _, n in socket.if_nameindex()}
    for tok in tokens:
        try:
            out.append(str(ipaddress.ip_address(tok.text)))
            continue
        except ValueError:
            pass
        if tok.text not in names:
            raise tok.error(f"bind: {tok.text!r} is neither an IP address nor a network interface")
        out.extend(interface_addresses(tok.text))
    return out


def parse(d: Dispenser) -> BindConf:
    """Parse one ``bind`` directive."""
    expect_args(d.name, d.args, 1, None, "bind ADDRESS|INTERFACE...")
    addrs = _resolve(d.args)
    excluded: list[str] = []
    for sub in d.block():
        if sub.name.text != "except":
            raise d.unknown(sub)
        expect_args(sub.name, sub.args, 1, None, "except ADDRESS|INTERFACE...")
        excluded.extend(_resolve(sub.args))
    return BindConf(tuple(a for a in dict.fromkeys(addrs) if a not in excluded))


def merge(confs: list[BindConf]) -> BindConf:
    """All ``bind`` lines of a server block together."""
    return BindConf(tuple(dict.fromkeys(a for c in confs for a in c.addresses)))
