"""The plugin runtime: what a plugin is, and what a Corefile's blocks run where.

A plugin is its directory ``fastdns/plugins/<name>/``: ``conf.py`` (parse),
``README.md``, and in ``__init__.py`` one :class:`Plugin` named ``PLUGIN``
saying what the plugin does once served.  Its name in
:data:`fastdns.config.registry.SUPPORTED` is the one registry line.  A plugin
whose package has no ``PLUGIN`` (or ``served=False``) is parsed, validated and
then refused by ``serve`` and ``check-config``.

What a plugin can declare (any subset):

``engine(server, conf) -> list[dict]``
    Its *engine stages* for its block: what the worker's C loop runs, in
    CoreDNS's plugin order (:data:`fastdns.config.registry.ORDER`).  Kinds:
    ``table`` (answers compiled into a table: its zones, what an absent name
    gets, fallthrough; the runtime assigns the table id), ``cache``, ``any``,
    ``whoami``, ``acl`` (``data``: its encoded rules) and ``python`` (hand the
    query to the plugin's Python handler; ``zones``: only names in them,
    ``qtypes``: only those types, the rest go on to the next stage in C;
    ``uncached``: no cache lookup in front of it).  A Python handler that passes a query
    on resumes the chain in C at the stage after its own
    (:meth:`fastdns._loop.Engine.resume`).  The engine knows kinds and data,
    not plugin names.
``flags(server, conf) -> dict``
    Block-wide engine flags (``ra``, ``loadbalance``, ``log``, cache settings).
``source``
    ``"module:Class"``: the coordinator-side source of a ``table`` stage's
    answers (see :class:`fastdns.coordinator.answers.TableSource`).
``handler``
    ``"module:function"`` ``(server, conf) -> resolver or None``: the
    worker-side Python for queries its ``python`` stage hands over
    (``resolver.resolve(q, packet, reply, tcp) -> bool``, True once answered).
``attach``
    ``"module:function"`` ``(worker, plan)``: worker-side state that spans
    blocks (``forward``'s upstream sockets), set up on every configuration.

:func:`block_config` and :func:`engine_config` turn a plan into the engine's
configuration; the coordinator computes it once and sends it, with the plan,
to every worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastdns._wire import name_from_text
from fastdns.config import registry
from fastdns.config.plan import Plan, ServerPlan

__all__ = ["Plugin", "plugin", "served", "sources", "source_id", "engine_config",
           "table_stages", "resolve", "assign_cache_namespaces", "CACHE_NAMESPACES"]

#: Cache namespaces (the shared cache's key flags byte holds the DO bit and one of these).
CACHE_NAMESPACES = 128


@dataclass(frozen=True)
class Plugin:
    """What a served plugin does (see the module doc)."""

    served: bool = True
    answers: bool = False           # writes responses: a metrics source id of its own
    engine: Callable[[ServerPlan, Any], list[dict[str, Any]]] | None = None
    flags: Callable[[ServerPlan, Any], dict[str, Any]] | None = None
    source: str | None = None
    handler: str | None = None
    attach: str | None = None


_NOT_SERVED = Plugin(served=False)


@cache
def plugin(name: str) -> Plugin:
    """The runtime entry of plugin ``name`` (not served if it declares none)."""
    if name not in registry.SUPPORTED:
        return _NOT_SERVED
    mod = importlib.import_module(f"fastdns.plugins.{name}")
    entry = getattr(mod, "PLUGIN", None)
    return entry if isinstance(entry, Plugin) else _NOT_SERVED


def served(name: str) -> bool:
    """Whether the server has plugin ``name``'s behaviour."""
    return plugin(name).served


def resolve(ref: str) -> Any:
    """``"module:attr"`` → the object."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def sources() -> tuple[str, ...]:
    """The ``plugin`` label of ``coredns_dns_responses_total`` by metrics source id:
    index 0 is the server itself (REFUSED, FORMERR...), then every served plugin
    that answers, in registry order."""
    return ("",) + tuple(n for n in registry.SUPPORTED if plugin(n).served and plugin(n).answers)


def source_id(name: str) -> int:
    """The metrics source id of plugin ``name`` (0 if it does not answer)."""
    try:
        return sources().index(name)
    except ValueError:
        return 0


def _wire_zones(zones: Any) -> list[bytes] | None:
    return None if zones is None else [name_from_text(z) for z in zones]


def block_config(server: ServerPlan, next_tid: int) -> dict[str, Any]:
    """One block's engine configuration: its stages in execution order (table
    ids from ``next_tid`` on) and its flags.  Stage dicts keep ``plugin`` (the
    name), ``pi`` (its index in ``server.plugins``) and ``zones_text`` for the
    coordinator; the engine ignores them."""
    stages: list[dict[str, Any]] = []
    flags: dict[str, Any] = {}
    python = False
    for pi, pc in enumerate(server.plugins):
        entry = plugin(pc.name)
        if entry.flags is not None:
            flags.update(entry.flags(server, pc.conf))
        if entry.engine is None:
            continue
        for st in entry.engine(server, pc.conf):
            st = dict(st)
            st.setdefault("src", source_id(pc.name))
            st["plugin"] = pc.name
            st["pi"] = pi
            if st["kind"] == "python":
                if python:
                    continue            # an earlier hand-over takes every name: C never gets here
                python = st.get("zones") is None and not st.get("qtypes")
                st["zones_text"] = st.get("zones")
                st["zones"] = _wire_zones(st.get("zones"))
            if st["kind"] == "table":
                st["tid"] = next_tid
                next_tid += 1
                st["zones_text"] = list(st["zones"])
                st["zones"] = _wire_zones(st["zones"])
                st["fallthrough"] = _wire_zones(st.get("fallthrough"))
            stages.append(st)
    return {"stages": _cache_before(stages), **flags}


_NEVER_CACHED = frozenset((251, 252))      # IXFR, AXFR


def _cache_before(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cache looked up just before each Python stage, for that stage's names.

    The cache only ever holds answers of the block's Python stages (compiled
    tables and C stages are never cached: they answer in O(1) and are always
    current), so a lookup in front of each Python stage, limited to the names
    and types it takes, answers what CoreDNS's order answers — except that a
    name a table gained since it was cached gets the table's current answer —
    and spares every other query a cache lookup: a ``template`` for
    ``internal.cloudapp.net`` before ``kubernetes`` does not put the cache in
    front of the cluster's names, nor a ``transfer`` (AXFR only) at all.  A stage
    marked ``uncached`` gets no lookup in front of it: its plugin comes before
    ``cache`` in CoreDNS's order and must see every query of its types (``dns64``,
    which checks the client and reads what the chain after it answers)."""
    cache = next((st for st in stages if st["kind"] == "cache"), None)
    if cache is None:
        return stages
    out: list[dict[str, Any]] = []
    for st in stages:
        if st["kind"] == "cache":
            continue
        if st["kind"] == "python" and not st.get("uncached"):
            qtypes = st.get("qtypes") or ()
            if not qtypes or not set(qtypes) <= _NEVER_CACHED:
                out.append({**cache, "zones": st.get("zones"), "zones_text": st.get("zones_text"),
                            "qtypes": list(qtypes)})
        out.append(st)
    if not any(st["kind"] == "cache" for st in out):
        out.append(cache)           # no Python stage: nothing is ever stored (CoreDNS: misses)
    return out


def engine_config(plan: Plan) -> dict[str, Any]:
    """The dict :meth:`fastdns._loop.Engine.configure` takes."""
    listeners = [{"address": li.address, "port": li.port, "transport": li.transport,
                  "zones": [[name_from_text(z), idx] for z, idx in li.zones]}
                 for li in plan.listeners]
    blocks = []
    tid = 0
    for server in plan.servers:
        bc = block_config(server, tid)
        tid += sum(1 for st in bc["stages"] if st["kind"] == "table")
        blocks.append(bc)
    return {"listeners": listeners, "blocks": blocks,
            "metrics": any(bc.get("metrics") for bc in blocks)}


def table_stages(econf: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """``(block index, stage)`` of every table stage, in table id order."""
    out = [(bi, st) for bi, bc in enumerate(econf["blocks"]) for st in bc["stages"]
           if st["kind"] == "table"]
    return sorted(out, key=lambda bs: bs[1]["tid"])


def assign_cache_namespaces(plan: Plan, econf: dict[str, Any],
                            previous: dict[Any, int] | None = None) -> dict[Any, int]:
    """Give every block with a cache its own namespace in the shared cache
    (``econf["blocks"][i]["cache_ns"]``): CoreDNS's caches are per server block, so
    one block's answers never reach another's clients.

    A block whose listeners, zones and plugin settings are those of a block in
    ``previous`` (the running configuration) keeps its namespace, so a reload keeps
    its cached answers; any other block gets a namespace no running block has, the
    least recently given first, so the entries of a changed block age out unseen.
    Returns the mapping to pass as ``previous`` next time."""
    previous = previous or {}
    order = list(previous.items())          # oldest assignment first
    out: dict[Any, int] = {}
    taken: set[int] = set()
    pending: list[tuple[int, Any]] = []
    for bi, (server, bc) in enumerate(zip(plan.servers, econf["blocks"])):
        if not bc.get("cache"):
            continue
        ident = (tuple(sorted((li["address"], li["port"], li["transport"], z)
                              for li in econf["listeners"] for z, b in li["zones"] if b == bi)),
                 tuple((pc.name, pc.conf) for pc in server.plugins))
        if ident in previous and previous[ident] not in taken:
            out[ident] = bc["cache_ns"] = previous[ident]
            taken.add(previous[ident])
        else:
            pending.append((bi, ident))
    used_before = [ns for _, ns in order]
    free = [ns for ns in range(CACHE_NAMESPACES) if ns not in used_before and ns not in taken]
    free += [ns for ns in used_before if ns not in taken and ns not in free]
    for bi, ident in pending:
        if not free:
            raise ValueError(f"more than {CACHE_NAMESPACES} server blocks with a cache")
        ns = free.pop(0)
        out[ident] = econf["blocks"][bi]["cache_ns"] = ns
        taken.add(ns)
    # retired blocks stay remembered (their namespace is reused last), current ones after
    retired = {ident: ns for ident, ns in order if ident not in out and ns not in taken}
    return {**retired, **out}
