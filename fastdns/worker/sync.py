"""Apply snapshots and deltas from the coordinator to a worker's engine.

Everything in one message is applied before the worker's loop reads the next
batch of queries, so no query sees half an update.
"""

from __future__ import annotations

import logging
from typing import Any

from fastdns._answers import AnswerTable
from fastdns._loop import Engine
from fastdns.ipc import schema

log = logging.getLogger("fastdns.worker.sync")


class TableSync:
    """Keeps an :class:`Engine`'s tables in step with the coordinator's sequence."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seq = -1
        self.gen = -1
        self.tables: dict[int, AnswerTable] = {}     # by table id
        self.health: dict[int, list[bool]] = {}

    def apply_snapshot(self, msg: dict[str, Any], nblocks: int) -> None:
        """Install a full snapshot (the engine is already configured for its gen)."""
        blocks = msg["blocks"]
        if len(blocks) != nblocks:
            raise ValueError(f"snapshot has {len(blocks)} blocks, configuration {nblocks}")
        self.tables = {}
        for tid, snap in enumerate(msg["tables"]):
            table = AnswerTable(max(16, int(snap.get("count", 0))))
            shared = [tuple(pair) for pair in snap.get("shared", [])]
            table.load_packed(snap.get("packed", b""), shared)
            self.tables[tid] = table
            self.engine.set_table(tid, table)
            for zi, (nx, nodata) in enumerate(snap["zones"]):
                self.engine.set_zone(tid, zi, nx, nodata)
            self.engine.set_synced(tid, bool(snap["synced"]))
        for bi, block in enumerate(blocks):
            self.health[bi] = list(block.get("health", []))
            self.engine.set_forward_health(bi, self.health[bi])
        self.seq = msg["seq"]
        self.gen = msg["gen"]

    def apply_delta(self, msg: dict[str, Any]) -> str:
        """Apply one delta: 'applied', 'old' (already in the snapshot), 'gap' or 'regen'."""
        seq, gen = msg["seq"], msg["gen"]
        if gen != self.gen:
            return "regen"
        if seq <= self.seq:
            return "old"
        if seq != self.seq + 1:
            return "gap"
        for op in msg["ops"]:
            kind = op[0]
            if kind == schema.OP_NAMES:
                _, tid, upserts, deletes = op
                table = self.tables[tid]
                for name in deletes:
                    table.delete(name)
                for name, entry in upserts:
                    table.set_packed(name, entry)
            elif kind == schema.OP_ZONE:
                _, tid, zi, nx, nodata = op
                self.engine.set_zone(tid, zi, nx, nodata)
            elif kind == schema.OP_SYNCED:
                self.engine.set_synced(op[1], bool(op[2]))
            elif kind == schema.OP_HEALTH:
                self.health[op[1]] = list(op[2])
                self.engine.set_forward_health(op[1], self.health[op[1]])
            else:
                log.warning("ignoring unknown delta op %r", kind)
        self.seq = seq
        return "applied"
