"""The ``kubernetes`` plugin: cluster DNS compiled from the Kubernetes API or a snapshot.

``KubernetesPlugin(conf, on_delta)`` is the one-call entry; the pieces are
:mod:`.objects` (slim records), :mod:`.source` (snapshot / list+watch),
:mod:`.index`, :mod:`.compile` (answers) and :mod:`.podnames`.  Attributes
are imported lazily so that reading ``conf`` does not load the API client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KubernetesPlugin", "ZoneCompiler", "Delta", "ClusterIndex", "SnapshotSource",
           "WatchSource", "pod_answer"]

_WHERE = {
    "KubernetesPlugin": "plugin", "ZoneCompiler": "compile", "Delta": "compile",
    "ClusterIndex": "index", "SnapshotSource": "source", "WatchSource": "source",
    "pod_answer": "podnames",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    return [{"kind": "table", "zones": tuple(conf.zones) or server.zones, "refuse_xfr": True,
             "soa_nodata": True, "pods": conf.pods, "ttl": int(conf.ttl),
             "fallthrough": conf.fallthrough}]


def _handler(server: Any, conf: Any) -> Any:
    if conf.pods != "insecure":
        return None
    from fastdns.plugins.kubernetes.podnames import PodReference
    return PodReference(conf)


from fastdns.plugins.runtime import Plugin  # noqa: E402  (after __getattr__: no cycle)

#: A table stage compiled from the API or a snapshot (plugin.table_source); pod
#: SRV/AXFR under ``pods insecure`` are answered in Python (PodReference).
PLUGIN = Plugin(answers=True, engine=_stages, source="fastdns.plugins.kubernetes.plugin:table_source",
                handler="fastdns.plugins.kubernetes:_handler")
