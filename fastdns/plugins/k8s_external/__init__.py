"""The ``k8s_external`` plugin (see README.md; settings in conf.py): Services' external
IPs and load balancer ingress under extra zones, compiled into a table stage from the
objects of the block's ``kubernetes`` source (source.py, compile.py)."""

from __future__ import annotations

from typing import Any

from fastdns.errors import ConfigError
from fastdns.plugins.runtime import Plugin


def _where(server: Any, conf: Any) -> tuple[str | None, int | None, int | None]:
    for p in server.plugins:
        if p.name == "k8s_external" and p.conf is conf:
            parts = p.where.rsplit(":", 2)
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                return parts[0], int(parts[1]), int(parts[2])
            return (p.where or None), None, None
    return None, None, None


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    if server.plugin("kubernetes") is None:
        # CoreDNS: "plugin/k8s_external: kubernetes plugin not loaded" (at start-up)
        raise ConfigError("k8s_external: the kubernetes plugin is not loaded in this server "
                          "block (k8s_external serves the Services of the block's kubernetes "
                          "line)", *_where(server, conf))
    # an absent name of its zones: NXDOMAIN or fallthrough; "*.<svc>.<ns>.<zone>"
    # entries answer any endpoint label below a Service with external IPs (wildcard)
    return [{"kind": "table", "zones": tuple(conf.zones), "wildcard": True,
             "fallthrough": conf.fallthrough}]


#: A table stage (source.ExternalSource follows the block's kubernetes source).
PLUGIN = Plugin(answers=True, engine=_stages,
                source="fastdns.plugins.k8s_external.source:ExternalSource")
