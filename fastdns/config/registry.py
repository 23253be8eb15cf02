"""Directive name → plugin parser, and the single plugin execution order.

:data:`ORDER` is CoreDNS's ``plugin.cfg`` order (``core/dnsserver/zdirectives.go``):
a query goes through a server block's plugins in this order whatever the
order they are written in the Corefile. Names in :data:`ORDER` that fastdns
does not support are an error ("not supported by fastdns"); names in no list
are "unknown plugin".

:data:`SUPPORTED` maps each supported directive to its ``conf`` module
(``fastdns.plugins.<name>.conf``), which provides ``parse(d) -> conf``,
``ONCE`` (at most one per server block) and optionally ``merge(confs)``
(several lines folded into one conf).  What a plugin does once served is
its package's ``PLUGIN`` entry (:mod:`fastdns.plugins.runtime`); a supported
plugin without one is parsed and validated, and then refused by both
``serve`` and ``check-config``
(:meth:`fastdns.config.plan.Plan.require_implemented`): a plugin that is
read and then ignored would silently change answers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["ORDER", "SUPPORTED", "PluginSpec", "spec", "order_index"]

ORDER: tuple[str, ...] = (
    "root", "metadata", "geoip", "cancel", "proxyproto", "quic", "grpc_server", "https",
    "https3", "timeouts", "multisocket", "reload", "nsid", "bufsize", "bind", "debug", "trace",
    "ready", "health", "pprof", "shed", "prometheus", "errors", "log", "dnstap", "local",
    "dns64", "any", "chaos", "loadbalance", "tsig", "rewrite", "autopath", "acl", "cache",
    "header", "dnssec", "tls", "minimal", "template", "transfer", "hosts", "route53", "azure",
    "clouddns", "k8s_external", "kubernetes", "file", "auto", "secondary", "etcd", "loop",
    "forward", "grpc", "erratic", "whoami", "on", "sign", "view", "nomad",
)

SUPPORTED: tuple[str, ...] = (
    "reload", "bind", "debug", "ready", "health", "prometheus", "errors", "log",
    "loadbalance", "cache", "hosts", "kubernetes", "loop", "forward", "whoami",
    "nsid", "bufsize", "local", "any", "chaos", "acl", "minimal", "template",
    "file",
    "k8s_external",
    "transfer",
    "dns64",
)

_INDEX = {name: i for i, name in enumerate(ORDER)}


@dataclass(frozen=True)
class PluginSpec:
    """How to parse one directive."""

    name: str
    parse: Callable[[Any], Any]
    once: bool
    merge: Callable[[list[Any]], Any] | None


_cache: dict[str, PluginSpec] = {}


def spec(name: str) -> PluginSpec | None:
    """The spec of a supported directive, or None."""
    if name not in SUPPORTED:
        return None
    if name not in _cache:
        mod: ModuleType = importlib.import_module(f"fastdns.plugins.{name}.conf")
        _cache[name] = PluginSpec(name, mod.parse, bool(getattr(mod, "ONCE", True)),
                                  getattr(mod, "merge", None))
    return _cache[name]


def order_index(name: str) -> int:
    """Position of ``name`` in the execution order."""
    return _INDEX[name]
