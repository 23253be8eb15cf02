"""Server blocks → :class:`Plan`: keys to zones, directives to plugin confs, checks.

Checks made here, each reported at the token at fault:

* unknown plugin / plugin not supported by fastdns / plugin used twice where
  CoreDNS allows it once per server block;
* transport other than ``dns://``;
* the same zone on the same port (and address) in two places, including an
  unbound one overlapping a bound one (CoreDNS's zoneOverlap rules).
"""

from __future__ import annotations

import os
from typing import Any

from fastdns.config import registry
from fastdns.config.address import ZoneAddr, ZoneSyntaxError, parse_key
from fastdns.config.dispenser import Dispenser
from fastdns.config.lexer import Token
from fastdns.config.parser import RawBlock
from fastdns.config.plan import Plan, PluginConf, ServerPlan

__all__ = ["build_plan"]


def _plugins(block: RawBlock, zones: tuple[str, ...], base_dir: str) -> list[PluginConf]:
    found: dict[str, list[tuple[Token, Any]]] = {}
    for directive in block.directives:
        name_tok = directive.name
        name = name_tok.text
        if name not in registry.ORDER:
            raise name_tok.error(f"unknown plugin {name!r}")
        spec = registry.spec(name)
        if spec is None:
            raise name_tok.error(f"plugin {name!r} is not supported by fastdns")
        if spec.once and name in found:
            first = found[name][0][0]
            raise name_tok.error(f"plugin {name!r} can only be used once per server block "
                                 f"(first used at {first.where})")
        conf = spec.parse(Dispenser(directive, zones, base_dir))
        found.setdefault(name, []).append((name_tok, conf))
    out: list[PluginConf] = []
    for name in sorted(found, key=registry.order_index):
        spec = registry.spec(name)
        assert spec is not None
        entries = found[name]
        if spec.merge is not None:
            out.append(PluginConf(name, spec.merge([c for _, c in entries]), entries[0][0].where))
        else:
            out.extend(PluginConf(name, c, t.where) for t, c in entries)
    return out


def build_plan(blocks: list[RawBlock], source: str, default_port: int = 53) -> Plan:
    """Turn parsed server blocks into a :class:`Plan` (see module doc for the checks)."""
    base_dir = os.path.dirname(os.path.abspath(source))
    servers: list[ServerPlan] = []
    seen: dict[tuple[str, int, str, str], Token] = {}
    for block in blocks:
        per_port: dict[tuple[str, int], list[tuple[ZoneAddr, Token]]] = {}
        for key in block.keys:
            try:
                addrs = parse_key(key.text, default_port)
            except ZoneSyntaxError as exc:
                raise key.error(str(exc)) from None
            for za in addrs:
                if za.transport != "dns":
                    raise key.error(f"transport {za.transport}:// is not supported by fastdns "
                                    "(only dns://)")
                per_port.setdefault((za.transport, za.port), []).append((za, key))
        all_zones = tuple(dict.fromkeys(za.zone for group in per_port.values() for za, _ in group))
        plugins = _plugins(block, all_zones, base_dir)
        bind_conf = next((p.conf for p in plugins if p.name == "bind"), None)
        bind: tuple[str, ...] = bind_conf.addresses if bind_conf is not None else ()
        for (transport, port), group in per_port.items():
            for za, key in group:
                for address in bind or ("",):
                    _check_overlap(seen, (za.zone, port, transport, address), key)
            servers.append(ServerPlan(port, transport,
                                      tuple(dict.fromkeys(za.zone for za, _ in group)),
                                      tuple(plugins), bind, group[0][1].where))
    return Plan(tuple(servers), source)


def _check_overlap(seen: dict[tuple[str, int, str, str], Token],
                   key: tuple[str, int, str, str], tok: Token) -> None:
    zone, port, transport, address = key
    clash = seen.get(key)
    if clash is None and address == "":
        clash = next((t for (z, p, tr, a), t in seen.items()
                      if (z, p, tr) == (zone, port, transport)), None)
    elif clash is None:
        clash = seen.get((zone, port, transport, ""))
    if clash is not None:
        on = f" on {address}" if address else ""
        raise tok.error(f"zone {zone} on {transport} port {port}{on} is already defined "
                        f"at {clash.where}")
    seen[key] = tok
