"""Compiled answers per table stage (the state workers copy), and their sources.

Every ``table`` engine stage of the plan (:mod:`fastdns.plugins.runtime`) has
one :class:`TableAnswers`, indexed by its table id, fed by one *source*: the
object its plugin's ``source`` entry builds from a :class:`SourceContext`
(the Kubernetes watch, a hosts file reader...).  A source keeps the one
copy of its compiled answers (``wire name → packed entry``,
:mod:`fastdns.compiled`) and hands over :class:`~fastdns.compiled.Delta`
objects; a table keeps a reference to that store (for snapshots) plus its
zone-wide negative bodies.

A source provides ``lock`` (held while its store changes), ``synced``,
``start()``, ``stop()`` and ``zone_answers() -> [(nxdomain, nodata), ...]``
(``Answer`` or None per zone of its stage: None makes an absent name SERVFAIL).
:func:`build_tables` makes the tables of a plan, reusing the sources of a
previous plan whose plugin, settings and zones are unchanged (a reload
re-syncs nothing it does not have to).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastdns import wire
from fastdns.config.plan import Plan, ServerPlan
from fastdns.ipc import codec
from fastdns.plugins.runtime import plugin, resolve, table_stages
from fastdns.records import Answer

__all__ = ["SourceContext", "StaticSource", "TableAnswers", "build_tables", "stop_tables"]

log = logging.getLogger("fastdns.coordinator.answers")


@dataclass(frozen=True)
class SourceContext:
    """What a source is built from."""

    conf: Any                       # its plugin's conf
    server: ServerPlan              # the block it serves
    zones: tuple[str, ...]          # its stage's zones (absolute)
    on_delta: Callable[[Any], None]  # every Delta it compiles (any thread)
    ns_addresses: tuple[str, ...]   # the addresses the server listens on (NS/glue)
    poll_interval: float            # how often files it reads are checked


class StaticSource:
    """A source whose answers are fixed when it is built (``chaos``...): one full
    Delta at :meth:`start`, nothing after.  ``entries`` is ``wire name → packed
    entry`` (:func:`fastdns.compiled.pack_bodies`); ``negatives`` one
    ``(nxdomain, nodata)`` per zone of its stage (None: SERVFAIL)."""

    def __init__(self, ctx: SourceContext, entries: dict[bytes, bytes],
                 negatives: list[tuple[Answer | None, Answer | None]] | None = None) -> None:
        from fastdns._packed import PackedStore
        from fastdns.compiled import EntryEncoder

        self.lock = threading.Lock()
        self.synced = False
        self._ctx = ctx
        self._store = PackedStore(len(entries))
        for key, entry in entries.items():
            self._store.put(key, entry)
        self._encoder = EntryEncoder([])
        self._negatives = negatives if negatives is not None else [(None, None)] * len(ctx.zones)

    def zone_answers(self) -> list[tuple[Answer | None, Answer | None]]:
        return self._negatives

    def start(self) -> None:
        from fastdns.compiled import Delta

        with self.lock:
            self.synced = True
            self._ctx.on_delta(Delta(self._store, frozenset(), self._encoder, True))

    def stop(self) -> None:
        """Nothing runs."""


class TableAnswers:
    """The encoded answers of one table stage (its compiled table + zone negatives).

    :attr:`store` is the source's live store (set by the first full Delta);
    read it (:meth:`snapshot`) only under the source's lock, after the
    Deltas already compiled have been applied.  :attr:`tid` may change on a
    reload (the source stays).
    """

    def __init__(self, tid: int, plugin: str, zones: tuple[str, ...], conf: Any) -> None:
        self.tid = tid
        self.plugin = plugin
        self.zones = zones
        self.conf = conf
        self.zone_bodies: list[list[bytes]] = [[b"", b""] for _ in zones]
        self.synced = False
        self.store: Any = None       # the source's PackedStore
        self.encoder: Any = None
        self.source: Any = None

    @property
    def key(self) -> tuple[Any, ...]:
        """What decides whether a reload can keep this table's source."""
        return (self.plugin, self.conf, self.zones)

    def set_zone_answers(self, answers: list[tuple[Answer | None, Answer | None]]
                         ) -> list[list[Any]]:
        """Zone-wide negatives (written to fit any question); returns ``zone`` ops' args."""
        ops = []
        for zi, (nx, nd) in enumerate(answers):
            bodies = [b"" if nx is None else wire.encode_answer(None, 0, nx),
                      b"" if nd is None else wire.encode_answer(None, 0, nd)]
            if bodies != self.zone_bodies[zi]:
                self.zone_bodies[zi] = bodies
                ops.append([zi, bodies[0], bodies[1]])
        return ops

    def apply(self, delta: Any) -> tuple[list[list[Any]], list[bytes]] | None:
        """Take a compiler Delta; returns the (upserts, deletes) to publish as a
        ``names`` op, or None for a full Delta (the whole state was replaced:
        workers must fetch a snapshot)."""
        if delta.full:
            self.store = delta.entries
            self.encoder = delta.encoder
            return None
        up = [[key, entry] for key, entry in delta.entries.items()]
        return up, list(delta.removed)

    def __len__(self) -> int:
        return len(self.store) if self.store is not None else 0

    def snapshot(self) -> dict[str, Any]:
        """The table as the snapshot message carries it: the source's store as
        one stream of packed records (``PackedStore.dump``, loaded by the worker's
        table in C), their shared negatives once."""
        packed = b""
        shared: list[list[bytes]] = []
        if self.store is not None:
            packed = self.store.dump()          # tens of MB: sent as a frame of its own
            shared = [list(pair) for pair in self.encoder.shared]
        return {"synced": self.synced, "zones": self.zone_bodies,
                "packed": codec.OutOfBand(packed), "count": len(self), "shared": shared}


def _abs(zone: str) -> str:
    return zone if zone.endswith(".") else zone + "."


def build_tables(plan: Plan, econf: dict[str, Any], old: list[TableAnswers],
                 on_delta: Callable[[TableAnswers, Any], None], *,
                 ns_addresses: tuple[str, ...], poll_interval: float
                 ) -> tuple[list[TableAnswers], list[TableAnswers]]:
    """The tables of ``plan`` by table id, and the old ones no longer used (to stop).

    An old table whose plugin, settings and zones are unchanged is kept with
    its source and answers (its id follows the new plan); the others get a
    new source, started here.  A source that fails to start stops the ones
    started so far and raises.
    """
    spare: dict[Any, list[TableAnswers]] = {}
    for t in old:           # equal keys (one hosts line in two blocks): each kept once
        spare.setdefault(t.key, []).append(t)
    tables: list[TableAnswers] = []
    tids: list[int] = []
    fresh: list[TableAnswers] = []
    try:
        for bi, st in table_stages(econf):
            server = plan.servers[bi]
            conf = server.plugins[st["pi"]].conf
            zones = tuple(_abs(z) for z in st["zones_text"])
            same = spare.get((st["plugin"], conf, zones))
            kept = same.pop(0) if same else None
            tids.append(st["tid"])
            if kept is not None:
                tables.append(kept)
                continue
            table = TableAnswers(st["tid"], st["plugin"], zones, conf)
            factory = resolve(plugin(st["plugin"]).source)
            table.source = factory(SourceContext(
                conf, server, zones, lambda d, t=table: on_delta(t, d), ns_addresses,
                poll_interval))
            table.set_zone_answers(table.source.zone_answers())
            fresh.append(table)
            table.source.start()
            tables.append(table)
    except BaseException:
        for t in fresh:
            _stop(t)
        raise
    for t, tid in zip(tables, tids):          # nothing changed until every source started
        t.tid = tid
    return tables, [t for ts in spare.values() for t in ts]


def _stop(table: TableAnswers) -> None:
    try:
        table.source.stop()
    except Exception:  # best effort: it is being replaced or shut down
        log.exception("stopping the %s source", table.plugin)


def stop_tables(tables: list[TableAnswers]) -> None:
    """Stop the sources of ``tables``."""
    for t in tables:
        _stop(t)
