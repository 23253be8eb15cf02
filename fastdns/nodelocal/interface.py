"""The interface carrying the node-local addresses (node-cache's ``--setup-interface``).

node-cache creates a ``dummy`` link (default name ``nodelocaldns``) and puts
each local IP on it as a host address (/32 or /128), so the kernel accepts
packets for 169.254.20.10 and the server can bind it.  Where the kernel has no
``dummy`` driver (``ip link add ... type dummy`` fails with "Unknown device
type" or "Operation not supported"), fastdns logs a warning and puts the
addresses on ``lo`` instead: the addresses are then just as local, only not
on a link of their own.

:meth:`InterfaceSetup.teardown` removes exactly what :func:`ensure_interface`
added: the link if it created it, otherwise only the addresses that were not
there before (never a pre-existing link or address).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field

from fastdns.errors import ServerError
from fastdns.nodelocal._cmd import (
    has_cap_net_admin,
    is_permission_error,
    need_cap_error,
    run,
)

__all__ = ["InterfaceSetup", "ensure_interface", "link_addresses", "parse_local_ips"]

log = logging.getLogger("fastdns.nodelocal")

FALLBACK_LINK = "lo"
_NO_DUMMY_MARKERS = ("unknown device type", "operation not supported", "not supported")
_WHAT = "--setup-interface"


def parse_local_ips(addresses: list[str] | tuple[str, ...]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Parse the local IPs (``"169.254.20.10"``); a bad one is a ServerError naming it."""
    out = []
    for a in addresses:
        try:
            out.append(ipaddress.ip_address(a.strip()))
        except ValueError:
            raise ServerError(f"{_WHAT}: invalid local IP address {a!r}") from None
    if not out:
        raise ServerError(f"{_WHAT}: no local IP address given (--localip)")
    return out


def _host_cidr(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{ip}/{ip.max_prefixlen}"


def _check(result, what: str) -> None:
    if result.returncode != 0:
        err = (result.stderr or result.stdout).strip()
        if is_permission_error(err):
            raise need_cap_error(what, err)
        raise ServerError(f"{what}: {err or f'exit status {result.returncode}'}")


def _link_exists(name: str, netns: str | None) -> bool:
    r = run(["ip", "-o", "link", "show", "dev", name], netns, _WHAT)
    if r.returncode == 0:
        return True
    err = r.stderr.lower()
    if "does not exist" in err or "cannot find device" in err:
        return False
    _check(r, f"{_WHAT}: ip link show {name}")
    return False


def _link_is_up(name: str, netns: str | None) -> bool:
    r = run(["ip", "-o", "link", "show", "dev", name], netns, _WHAT)
    _check(r, f"{_WHAT}: ip link show {name}")
    m = re.search(r"<([^>]*)>", r.stdout)
    return bool(m and "UP" in m.group(1).split(","))


def link_addresses(name: str, netns: str | None = None) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The IPv4 and IPv6 addresses on link ``name`` (without prefix lengths)."""
    r = run(["ip", "-o", "addr", "show", "dev", name], netns, _WHAT)
    _check(r, f"{_WHAT}: ip addr show {name}")
    found = set()
    for m in re.finditer(r"\binet6?\s+([0-9a-fA-F:.]+)/\d+", r.stdout):
        found.add(ipaddress.ip_address(m.group(1)))
    return found


@dataclass
class InterfaceSetup:
    """What :func:`ensure_interface` did, so :meth:`teardown` can undo exactly that.

    ``link`` is the link carrying the addresses (the dummy link, or ``lo`` when
    ``fallback`` is true); ``added`` are the host CIDRs this setup added.
    """

    requested_name: str
    link: str
    addresses: tuple[str, ...]
    netns: str | None = None
    created_link: bool = False
    fallback: bool = False
    added: list[str] = field(default_factory=list)
    brought_up: bool = False
    torn_down: bool = False

    def teardown(self) -> None:
        """Remove what was added (idempotent); pre-existing links and addresses stay."""
        if self.torn_down:
            return
        errors: list[str] = []
        if self.created_link:
            r = run(["ip", "link", "del", "dev", self.link], self.netns, _WHAT)
            if r.returncode != 0 and "cannot find device" not in r.stderr.lower():
                errors.append(f"ip link del {self.link}: {r.stderr.strip()}")
            else:
                log.info("removed interface %s", self.link)
        else:
            for cidr in reversed(self.added):
                r = run(["ip", "addr", "del", cidr, "dev", self.link], self.netns, _WHAT)
                if r.returncode != 0 and "cannot assign requested address" not in r.stderr.lower():
                    errors.append(f"ip addr del {cidr} dev {self.link}: {r.stderr.strip()}")
                else:
                    log.info("removed address %s from %s", cidr, self.link)
            if self.brought_up:
                r = run(["ip", "link", "set", "dev", self.link, "down"], self.netns, _WHAT)
                if r.returncode != 0:
                    errors.append(f"ip link set {self.link} down: {r.stderr.strip()}")
        self.torn_down = True
        if errors:
            msg = "; ".join(errors)
            if any(is_permission_error(e) for e in errors):
                raise need_cap_error("interface teardown", msg)
            raise ServerError(f"interface teardown failed: {msg}")


def ensure_interface(name: str, addresses: list[str] | tuple[str, ...],
                     netns: str | None = None) -> InterfaceSetup:
    """Make ``addresses`` local on the dummy link ``name`` (created if absent).

    As node-cache's EnsureDummyDevice: an existing link ``name`` keeps its
    addresses and gets the missing ones.  Without a ``dummy`` driver the
    addresses go on ``lo`` (a WARNING says so).  ``netns`` runs every command
    inside that network namespace (``ip netns exec``).  Raises ServerError
    (naming CAP_NET_ADMIN) without the privilege.
    """
    ips = parse_local_ips(addresses)
    if not has_cap_net_admin():
        raise need_cap_error(f"{_WHAT} (creating interface {name!r})")
    setup = InterfaceSetup(requested_name=name, link=name, addresses=tuple(str(i) for i in ips), netns=netns)

    if not _link_exists(name, netns):
        r = run(["ip", "link", "add", name, "type", "dummy"], netns, _WHAT)
        if r.returncode == 0:
            setup.created_link = True
            log.info("created dummy interface %s", name)
        elif any(m in r.stderr.lower() for m in _NO_DUMMY_MARKERS):
            log.warning("the kernel has no 'dummy' interface driver (ip link add %s type dummy: %s); "
                        "putting %s on %s instead", name, r.stderr.strip(),
                        ", ".join(setup.addresses), FALLBACK_LINK)
            setup.link = FALLBACK_LINK
            setup.fallback = True
        else:
            _check(r, f"{_WHAT}: ip link add {name} type dummy")

    try:
        present = link_addresses(setup.link, netns)
        for ip in ips:
            if ip in present:
                log.info("%s already on %s", ip, setup.link)
                continue
            cidr = _host_cidr(ip)
            argv = ["ip", "addr", "add", cidr, "dev", setup.link]
            if ip.version == 6:
                argv.append("nodad")
            r = run(argv, netns, _WHAT)
            _check(r, f"{_WHAT}: ip addr add {cidr} dev {setup.link}")
            setup.added.append(cidr)
            log.info("added %s to %s", cidr, setup.link)
        if not _link_is_up(setup.link, netns):
            r = run(["ip", "link", "set", "dev", setup.link, "up"], netns, _WHAT)
            _check(r, f"{_WHAT}: ip link set {setup.link} up")
            setup.brought_up = not setup.created_link
    except BaseException:
        try:
            setup.teardown()
        except ServerError as exc:
            log.error("undoing a failed interface setup: %s", exc)
        raise
    return setup
