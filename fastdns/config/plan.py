"""The frozen result of reading a Corefile: servers, their zones and plugin chains.

A :class:`Plan` is pure data (no sockets, no threads): the coordinator turns it
into listeners and workers; ``fastdns check-config`` prints :meth:`Plan.explain`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import dns.name

from fastdns.errors import ConfigError

__all__ = ["PluginConf", "ServerPlan", "Listener", "Plan"]


@dataclass(frozen=True)
class PluginConf:
    """One plugin in a server's chain: its directive ``name``, parsed ``conf``, and
    where it was written (``file:line:col``)."""

    name: str
    conf: Any
    where: str = ""


@dataclass(frozen=True)
class ServerPlan:
    """One server block on one (transport, port): the zones it answers for and its chain.

    ``plugins`` are in execution order (:data:`fastdns.config.registry.ORDER`);
    ``bind`` holds the addresses to listen on (empty: all addresses).
    """

    port: int
    transport: str
    zones: tuple[str, ...]
    plugins: tuple[PluginConf, ...]
    bind: tuple[str, ...] = ()
    where: str = ""

    def plugin(self, name: str) -> Any | None:
        """The conf of the first plugin called ``name``, or None."""
        for p in self.plugins:
            if p.name == name:
                return p.conf
        return None

    def plugins_named(self, name: str) -> tuple[Any, ...]:
        """The confs of every plugin called ``name`` (e.g. several ``forward``)."""
        return tuple(p.conf for p in self.plugins if p.name == name)


@dataclass(frozen=True)
class Listener:
    """One socket address and the zones it serves: ``zones`` pairs each zone with the
    index of its server in :attr:`Plan.servers`, longest zone first."""

    address: str
    port: int
    transport: str
    zones: tuple[tuple[str, int], ...]

    def match(self, qname: str) -> int | None:
        """Index of the server whose zone is the longest suffix of ``qname``, or None."""
        name = dns.name.from_text(qname)
        for zone, index in self.zones:
            if name.is_subdomain(dns.name.from_text(zone)):
                return index
        return None

    def __str__(self) -> str:
        host = "*" if not self.address else (f"[{self.address}]" if ":" in self.address
                                             else self.address)
        return f"{self.transport}://{host}:{self.port}"


def _zone_key(zone: str) -> tuple[int, str]:
    return (-len(dns.name.from_text(zone).labels), zone)


@dataclass(frozen=True)
class Plan:
    """Everything a Corefile says. ``source`` is the Corefile's path (or name)."""

    servers: tuple[ServerPlan, ...]
    source: str = "Corefile"

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """Distinct (address, port, transport) sockets with the zones each serves."""
        groups: dict[tuple[str, int, str], list[tuple[str, int]]] = {}
        for index, server in enumerate(self.servers):
            for address in server.bind or ("",):
                key = (address, server.port, server.transport)
                groups.setdefault(key, []).extend((z, index) for z in server.zones)
        return tuple(Listener(a, p, t, tuple(sorted(z, key=lambda zi: _zone_key(zi[0]))))
                     for (a, p, t), z in groups.items())

    def server_for(self, qname: str, port: int, address: str = "") -> ServerPlan | None:
        """The server answering ``qname`` arriving on ``address:port``: a listener bound
        to that exact address is used if one exists, else the wildcard one; within it the
        longest matching zone wins."""
        candidates = [li for li in self.listeners if li.port == port]
        exact = [li for li in candidates if li.address == address and address]
        for listener in exact or [li for li in candidates if li.address == ""]:
            index = listener.match(qname)
            if index is not None:
                return self.servers[index]
        return None

    def confs(self, name: str) -> tuple[Any, ...]:
        """Every conf of plugin ``name`` across all servers."""
        return tuple(c for s in self.servers for c in s.plugins_named(name))

    def unimplemented(self) -> list[PluginConf]:
        """Plugins parsed and validated whose behaviour the server does not have yet."""
        from fastdns.plugins.runtime import served
        return [p for s in self.servers for p in s.plugins if not served(p.name)]

    def require_implemented(self) -> None:
        """Raise :class:`ConfigError` at the first plugin the server cannot serve:
        a plugin that is parsed and then ignored would silently change answers."""
        missing = self.unimplemented()
        if missing:
            p = missing[0]
            file, line, col = _split_where(p.where)
            others = sorted({m.name for m in missing} - {p.name})
            raise ConfigError(f"plugin '{p.name}' is recognised but not served by fastdns yet"
                              + (f" (nor {', '.join(others)})" if others else "")
                              + "; remove it, or see the plugin's README for what is coming",
                              file, line, col)

    def explain(self) -> str:
        """Human-readable plan for ``fastdns check-config``."""
        from fastdns.plugins.runtime import served
        lines = [f"Corefile: {self.source}", "", "Listeners:"]
        for li in self.listeners:
            zones = ", ".join(f"{z} (server {i + 1})" for z, i in li.zones)
            lines.append(f"  {li}  →  {zones}")
        for n, server in enumerate(self.servers, 1):
            bind = ", ".join(server.bind) if server.bind else "all addresses"
            lines += ["", f"Server {n} ({server.where}): {server.transport} port {server.port}, "
                          f"bind {bind}",
                      f"  zones: {' '.join(server.zones)}",
                      "  plugin chain (execution order):"]
            width = max((len(p.name) for p in server.plugins), default=0)
            for p in server.plugins:
                status = "implemented" if served(p.name) else \
                    "NOT SERVED: serve refuses this Corefile"
                lines.append(f"    {p.name:<{width}}  [{status}]  {_summary(p.conf)}".rstrip())
            if not server.plugins:
                lines.append("    (none: every query is answered REFUSED)")
        return "\n".join(lines) + "\n"


def _split_where(where: str) -> tuple[str | None, int | None, int | None]:
    """``file:line:col`` → its parts (a file name may hold colons)."""
    parts = where.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return (where or None), None, None


def _summary(conf: Any) -> str:
    """Fields that differ from the dataclass defaults, as ``name=value``."""
    if not dataclasses.is_dataclass(conf):
        return ""
    out = [f"address={conf.address}"] if hasattr(conf, "address") else []
    for f in dataclasses.fields(conf):
        value = getattr(conf, f.name)
        if f.name in ("host", "port"):
            continue
        if f.name != "zones" and f.default is not dataclasses.MISSING and value == f.default:
            continue
        if isinstance(value, tuple):
            value = " ".join(str(v) for v in value) if value else "()"
        out.append(f"{f.name}={value}")
    return " ".join(out)
