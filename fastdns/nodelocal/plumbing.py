"""Set up and tear down the node-local plumbing for ``fastdns serve``.

The coordinator builds one :class:`NodeLocalPlumbing` from the serve flags
(``--localip``, ``--interface-name``, ``--setup-interface``,
``--setup-iptables``, ``--skip-teardown``) and calls :meth:`setup` before it
binds and :meth:`teardown` on exit.  node-cache adds its iptables rules only
once the server is up (so a server that fails to start leaves no rules);
callers that want that order call :meth:`add_interface` before binding and
:meth:`add_iptables_rules` after, and :meth:`resync` periodically to put
back rules something removed (:meth:`resync_every`; ``fastdns serve
--sync-interval``, node-cache's ``-syncinterval``, default 60 s).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from fastdns.errors import ServerError
from fastdns.nodelocal.interface import (
    InterfaceSetup,
    ensure_interface,
    parse_local_ips,
)
from fastdns.nodelocal.iptables import IptablesSetup, ensure_rules

__all__ = ["NodeLocalPlumbing"]

log = logging.getLogger("fastdns.nodelocal")


class NodeLocalPlumbing:
    """The interface and iptables rules of a node-local cache, undone on teardown.

    ``localips``: the addresses (``["169.254.20.10"]`` or with the kube-dns
    service IP); ``netns``: run every command inside that network namespace
    (tests); ``port``/``health_port``: as node-cache's ``-dns.port`` and
    ``-health-port``.  Use as a context manager or call setup()/teardown().
    """

    def __init__(self, localips: Sequence[str], interface_name: str = "nodelocaldns",
                 setup_interface: bool = False, setup_iptables: bool = False,
                 skip_teardown: bool = False, netns: str | None = None,
                 port: int = 53, health_port: int = 8080) -> None:
        self.localips = [str(ip) for ip in parse_local_ips(list(localips))]
        self.interface_name = interface_name
        self.setup_interface = setup_interface
        self.setup_iptables = setup_iptables
        self.skip_teardown = skip_teardown
        self.netns = netns
        self.port = port
        self.health_port = health_port
        self.interface: InterfaceSetup | None = None
        self.iptables: IptablesSetup | None = None

    def add_interface(self) -> InterfaceSetup | None:
        """Create the interface with the local IPs (when ``setup_interface``)."""
        if self.setup_interface and self.interface is None:
            self.interface = ensure_interface(self.interface_name, self.localips, netns=self.netns)
        return self.interface

    def add_iptables_rules(self) -> IptablesSetup | None:
        """Add node-cache's rules for the local IPs (when ``setup_iptables``)."""
        if self.setup_iptables and self.iptables is None:
            self.iptables = ensure_rules(self.localips, self.port, self.health_port, netns=self.netns)
        return self.iptables

    def setup(self) -> None:
        """Interface, then iptables rules; on failure undo what this call added and re-raise."""
        try:
            self.add_interface()
            self.add_iptables_rules()
        except BaseException:
            if not self.skip_teardown:
                try:
                    self._undo()
                except ServerError as exc:
                    log.error("undoing a failed node-local setup: %s", exc)
            raise

    def resync(self) -> None:
        """Put back rules that disappeared (node-cache's periodic check)."""
        if self.iptables is not None:
            self.iptables.ensure()

    def resync_every(self, interval: float, stop: threading.Event) -> None:
        """Call :meth:`resync` every ``interval`` seconds until ``stop`` is set, as
        node-cache's ``-syncinterval``; a failure is logged and tried again next time."""
        while not stop.wait(interval):
            try:
                self.resync()
            except ServerError as e:
                log.error("node-local iptables resync failed: %s (trying again in %g s)",
                          e, interval)

    def teardown(self) -> None:
        """Remove the rules, then the interface (unless ``skip_teardown``); idempotent."""
        if self.skip_teardown:
            if self.interface or self.iptables:
                log.info("--skip-teardown: leaving the node-local interface and iptables rules in place")
            return
        self._undo()

    def _undo(self) -> None:
        errors: list[str] = []
        for part in (self.iptables, self.interface):
            if part is None:
                continue
            try:
                part.teardown()
            except ServerError as exc:
                errors.append(str(exc))
        self.iptables = self.interface = None
        if errors:
            raise ServerError("; ".join(errors))

    def __enter__(self) -> Self:
        self.setup()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.teardown()
