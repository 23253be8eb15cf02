"""Plan → the worker engine's routing tables (pure; coordinator and workers agree).

Both sides compute this from the same Corefile text, so the block indexes in
IPC messages mean the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from fastdns._wire import name_from_text
from fastdns.config.plan import Plan, ServerPlan
from fastdns.errors import ConfigError

# plugins whose work happens in Python for queries that reach them
PYTHON_PLUGINS = ("forward", "whoami", "hosts")


def kubernetes_zones(server: ServerPlan) -> tuple[str, ...]:
    """The zones a block's ``kubernetes`` plugin is authoritative for ((): none)."""
    conf = server.plugin("kubernetes")
    if conf is None:
        return ()
    return tuple(z for z in conf.zones) or server.zones


def engine_config(plan: Plan) -> dict[str, Any]:
    """The dict ``fastdns._loop.Engine.configure`` takes."""
    listeners = []
    for li in plan.listeners:
        listeners.append({
            "address": li.address, "port": li.port, "transport": li.transport,
            "zones": [[name_from_text(z), idx] for z, idx in li.zones],
        })
    blocks = []
    for server in plan.servers:
        k8s = server.plugin("kubernetes")
        cache = server.plugin("cache")
        block: dict[str, Any] = {
            "auth_zones": [name_from_text(z) for z in kubernetes_zones(server)],
            "python": any(server.plugin(p) is not None for p in PYTHON_PLUGINS),
            "ra": server.plugin("forward") is not None,
            "cache": cache is not None,
            "stale_window": int(cache.serve_stale or 0) if cache is not None else 0,
            "keepttl": cache is not None and cache.keepttl,
        }
        if k8s is not None:
            fall = k8s.fallthrough
            block.update({
                "pods": k8s.pods,
                "ttl": int(k8s.ttl),
                "fallthrough": None if fall is None else [name_from_text(z) for z in fall],
            })
        blocks.append(block)
    return {"listeners": listeners, "blocks": blocks}


def check_plan(plan: Plan) -> None:
    """Raise :class:`ConfigError` unless the workers can serve ``plan``: every
    plugin in it is served, and its listeners, blocks and zones fit the C
    engine's fixed tables.  ``serve``, a reload and ``check-config`` call it,
    so a Corefile a worker would refuse is refused before any worker sees it."""
    from fastdns._loop import _check_conf

    plan.require_implemented()
    econf = engine_config(plan)
    try:
        _check_conf(econf["listeners"], econf["blocks"])
    except ValueError as exc:
        raise ConfigError(f"{exc} (a limit of fastdns's engine)", plan.source) from None
