"""Encoded answers per server block: the state workers copy.

The Kubernetes compiler keeps the one copy of a block's compiled answers
(``wire name → packed entry``, :mod:`fastdns.plugins.kubernetes.encode`) and
hands over :class:`~fastdns.plugins.kubernetes.compile.Delta` objects whose
entries are already encoded.  A block only keeps a reference to that store
(for snapshots) plus its zone-wide negative bodies; it holds no copy.
"""

from __future__ import annotations

from typing import Any

from fastdns import wire
from fastdns.ipc import codec
from fastdns.records import Answer

Bodies = list[list[Any]]          # [[qtype, body], ...]


class BlockAnswers:
    """The encoded answers of one server block (its compiled table + zone negatives).

    :attr:`source` is the compiler's live store (set by the first full
    Delta); read it (:meth:`snapshot`) only under the lock that serialises
    the compiler, after the Deltas already compiled have been applied.
    """

    def __init__(self, zones: tuple[str, ...]) -> None:
        self.zones = zones
        self.zone_bodies: list[list[bytes]] = [[b"", b""] for _ in zones]
        self.synced = False
        self.source: Any = None      # the compiler's PackedStore
        self.encoder: Any = None

    def set_zone_answers(self, nxdomain: list[Answer], nodata: list[Answer]) -> list[list[Any]]:
        """Zone-wide negatives (written to fit any question); returns ``zone`` ops' args."""
        ops = []
        for zi, (nx, nd) in enumerate(zip(nxdomain, nodata)):
            bodies = [wire.encode_answer(None, 0, nx), wire.encode_answer(None, 0, nd)]
            if bodies != self.zone_bodies[zi]:
                self.zone_bodies[zi] = bodies
                ops.append([zi, bodies[0], bodies[1]])
        return ops

    def apply(self, delta: Any) -> tuple[list[list[Any]], list[bytes]] | None:
        """Take a compiler Delta; returns the (upserts, deletes) to publish as a
        ``names`` op, or None for a full Delta (the whole state was replaced:
        workers must fetch a snapshot)."""
        if delta.full:
            self.source = delta.entries
            self.encoder = delta.encoder
            return None
        up = [[key, entry] for key, entry in delta.entries.items()]
        return up, list(delta.removed)

    def __len__(self) -> int:
        return len(self.source) if self.source is not None else 0

    def snapshot(self) -> dict[str, Any]:
        """The block as the snapshot message carries it: the compiler's store as
        one stream of packed records (``PackedStore.dump``, loaded by the worker's
        table in C), their shared negatives once."""
        packed = b""
        shared: list[list[bytes]] = []
        if self.source is not None:
            packed = self.source.dump()         # tens of MB: sent as a frame of its own
            shared = [list(pair) for pair in self.encoder.shared]
        return {"synced": self.synced, "zones": self.zone_bodies,
                "packed": codec.OutOfBand(packed), "count": len(self), "shared": shared}
