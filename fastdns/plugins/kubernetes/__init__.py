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
