"""node-cache's iptables rules (``--setup-iptables``), added and removed as it does.

For each local IP node-cache (``kubernetes/dns: cmd/node-cache/app/cache_app.go``,
``initIptables``) keeps queries to and answers from ``IP:53`` out of
conntrack (raw table NOTRACK) and accepts them in the filter table, since the
usual "accept tracked connections" rules no longer match:

* raw PREROUTING  ``-p tcp|udp -d IP --dport 53 -j NOTRACK``
* filter INPUT    ``-p tcp|udp -d IP --dport 53 -j ACCEPT``
* raw OUTPUT      ``-p tcp|udp -s IP --sport 53 -j NOTRACK``
* filter OUTPUT   ``-p tcp|udp -s IP --sport 53 -j ACCEPT``
* raw OUTPUT      ``-p tcp|udp -d IP --dport 53 -j NOTRACK`` (hostNetwork clients)
* raw OUTPUT      ``-p tcp -d IP --dport 8080`` and ``-s IP --sport 8080 -j NOTRACK`` (health)

each with the comment ``NodeLocal DNS Cache: skip conntrack`` or
``NodeLocal DNS Cache: allow DNS traffic``.  Like node-cache's EnsureRule
(Prepend) a rule is checked with ``-C`` and inserted at the top with ``-I``
when absent; teardown deletes every copy of each rule (node-cache deletes in
a loop: copies left by an earlier instance that died are removed too).
IPv4 addresses use ``iptables``, IPv6 ones ``ip6tables``; always with ``-w``.
"""

from __future__ import annotations

import ipaddress
import logging
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from fastdns.errors import ServerError
from fastdns.nodelocal._cmd import (
    has_cap_net_admin,
    is_permission_error,
    need_cap_error,
    run,
)

__all__ = [
    "COMMENT_ALLOW_TRAFFIC",
    "COMMENT_SKIP_CONNTRACK",
    "IptablesSetup",
    "Rule",
    "delete_rules",
    "ensure_rules",
    "nodelocal_rules",
    "rule_exists",
]

log = logging.getLogger("fastdns.nodelocal")

COMMENT_SKIP_CONNTRACK = "NodeLocal DNS Cache: skip conntrack"
COMMENT_ALLOW_TRAFFIC = "NodeLocal DNS Cache: allow DNS traffic"
_WHAT = "--setup-iptables"
# -C's exit status when the rule is simply absent (iptables' "bad rule").
_ABSENT = 1


@dataclass(frozen=True)
class Rule:
    """One rule: ``binary -t table -X chain *args``."""

    binary: str  # "iptables" or "ip6tables"
    table: str
    chain: str
    args: tuple[str, ...]

    def command(self, op: str) -> list[str]:
        """The argument list for ``op`` (``-C``, ``-I``, ``-A``, ``-D``)."""
        return [self.binary, "-w", "-t", self.table, op, self.chain, *self.args]

    def __str__(self) -> str:
        return shlex.join(self.command("-A"))


def nodelocal_rules(local_ip: str, port: int = 53, health_port: int = 8080) -> list[Rule]:
    """node-cache's rules for one local IP, in node-cache's order."""
    try:
        ip = ipaddress.ip_address(local_ip)
    except ValueError:
        raise ServerError(f"{_WHAT}: invalid local IP address {local_ip!r}") from None
    binary = "ip6tables" if ip.version == 6 else "iptables"
    a, p, hp = str(ip), str(port), str(health_port)
    skip = ("-m", "comment", "--comment", COMMENT_SKIP_CONNTRACK)
    allow = ("-m", "comment", "--comment", COMMENT_ALLOW_TRAFFIC)

    def r(table: str, chain: str, *args: str) -> Rule:
        return Rule(binary, table, chain, tuple(args))

    return [
        r("raw", "PREROUTING", "-p", "tcp", "-d", a, "--dport", p, "-j", "NOTRACK", *skip),
        r("raw", "PREROUTING", "-p", "udp", "-d", a, "--dport", p, "-j", "NOTRACK", *skip),
        r("filter", "INPUT", "-p", "tcp", "-d", a, "--dport", p, "-j", "ACCEPT", *allow),
        r("filter", "INPUT", "-p", "udp", "-d", a, "--dport", p, "-j", "ACCEPT", *allow),
        r("raw", "OUTPUT", "-p", "tcp", "-s", a, "--sport", p, "-j", "NOTRACK", *skip),
        r("raw", "OUTPUT", "-p", "udp", "-s", a, "--sport", p, "-j", "NOTRACK", *skip),
        r("filter", "OUTPUT", "-p", "tcp", "-s", a, "--sport", p, "-j", "ACCEPT", *allow),
        r("filter", "OUTPUT", "-p", "udp", "-s", a, "--sport", p, "-j", "ACCEPT", *allow),
        r("raw", "OUTPUT", "-p", "tcp", "-d", a, "--dport", p, "-j", "NOTRACK", *skip),
        r("raw", "OUTPUT", "-p", "udp", "-d", a, "--dport", p, "-j", "NOTRACK", *skip),
        r("raw", "OUTPUT", "-p", "tcp", "-d", a, "--dport", hp, "-j", "NOTRACK", *skip),
        r("raw", "OUTPUT", "-p", "tcp", "-s", a, "--sport", hp, "-j", "NOTRACK", *skip),
    ]


def _fail(rule: Rule, op: str, result) -> ServerError:
    err = (result.stderr or result.stdout).strip()
    if is_permission_error(err):
        return need_cap_error(f"{_WHAT} ({rule.binary} -t {rule.table})", err)
    return ServerError(f"{_WHAT}: {' '.join(rule.command(op))}: {err or f'exit status {result.returncode}'}")


def rule_exists(rule: Rule, netns: str | None = None) -> bool:
    """``iptables -C``: whether the rule is in its chain."""
    r = run(rule.command("-C"), netns, _WHAT)
    if r.returncode == 0:
        return True
    if r.returncode == _ABSENT and not is_permission_error(r.stderr):
        return False
    raise _fail(rule, "-C", r)


def delete_rules(rules: Iterable[Rule], netns: str | None = None) -> None:
    """Delete every copy of each rule (absent ones are fine); errors are collected then raised."""
    errors: list[ServerError] = []
    for rule in rules:
        for _ in range(1000):  # bounded: a rule cannot have more copies than that in practice
            try:
                if not rule_exists(rule, netns):
                    break
            except ServerError as exc:
                errors.append(exc)
                break
            r = run(rule.command("-D"), netns, _WHAT)
            if r.returncode != 0:
                errors.append(_fail(rule, "-D", r))
                break
            log.debug("deleted iptables rule: %s", rule)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise ServerError("; ".join(str(e) for e in errors))


@dataclass
class IptablesSetup:
    """The rules managed for some local IPs; :meth:`teardown` removes them."""

    rules: list[Rule]
    netns: str | None = None
    added: list[Rule] = field(default_factory=list)
    torn_down: bool = False

    def ensure(self) -> list[Rule]:
        """Check each rule, insert the missing ones at the top; returns the ones inserted."""
        inserted = []
        for rule in self.rules:
            if rule_exists(rule, self.netns):
                log.debug("iptables rule already present: %s", rule)
                continue
            r = run(rule.command("-I"), self.netns, _WHAT)
            if r.returncode != 0:
                raise _fail(rule, "-I", r)
            log.info("added iptables rule: %s", rule)
            inserted.append(rule)
            self.added.append(rule)
        self.torn_down = False
        return inserted

    def teardown(self) -> None:
        """Delete every copy of the rules (as node-cache's TeardownNetworking); idempotent."""
        if self.torn_down:
            return
        delete_rules(self.rules, self.netns)
        self.torn_down = True
        log.info("removed node-local iptables rules for %s",
                 ", ".join(sorted({r.args[3] for r in self.rules})))


def ensure_rules(local_ips: Iterable[str], port: int = 53, health_port: int = 8080,
                 netns: str | None = None) -> IptablesSetup:
    """Add node-cache's rules for each local IP (idempotently); ``netns`` confines them.

    Raises ServerError naming CAP_NET_ADMIN without the privilege, or naming
    the missing ``iptables``/``ip6tables`` command.
    """
    rules: list[Rule] = []
    for ip in local_ips:
        rules.extend(nodelocal_rules(ip, port, health_port))
    if not rules:
        raise ServerError(f"{_WHAT}: no local IP address given (--localip)")
    if not has_cap_net_admin():
        raise need_cap_error(_WHAT)
    setup = IptablesSetup(rules=rules, netns=netns)
    try:
        setup.ensure()
    except BaseException:
        try:
            delete_rules(setup.added, netns)
        except ServerError as exc:
            log.error("undoing a failed iptables setup: %s", exc)
        raise
    return setup
