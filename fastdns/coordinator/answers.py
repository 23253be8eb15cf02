"""Compiled answers → encoded bodies, per server block: the state workers copy.

The Kubernetes plugin hands over :class:`Delta` objects (text names,
:class:`~fastdns.records.Answer` values); this module encodes each answer
once into a stored body and keeps the full encoded state for snapshots.
"""

from __future__ import annotations

from typing import Any

from fastdns import wire
from fastdns.records import Answer

Bodies = list[list[Any]]          # [[qtype, body], ...]


def encode_name(name: str, inner: dict[int, Answer]) -> tuple[bytes, Bodies]:
    """One name's answers as (lower-cased wire name, [[qtype, body], ...])."""
    key = wire.name_from_text(name.lower())
    return key, [[qtype, wire.encode_answer(key, qtype, ans)] for qtype, ans in inner.items()]


class BlockAnswers:
    """The encoded answers of one server block (its compiled table + zone negatives)."""

    def __init__(self, zones: tuple[str, ...]) -> None:
        self.zones = zones
        self.names: dict[bytes, Bodies] = {}
        self.zone_bodies: list[list[bytes]] = [[b"", b""] for _ in zones]
        self.synced = False

    def set_zone_answers(self, nxdomain: list[Answer], nodata: list[Answer]) -> list[list[Any]]:
        """Zone-wide negatives (written to fit any question); returns ``zone`` ops' args."""
        ops = []
        for zi, (nx, nd) in enumerate(zip(nxdomain, nodata)):
            bodies = [wire.encode_answer(None, 0, nx), wire.encode_answer(None, 0, nd)]
            if bodies != self.zone_bodies[zi]:
                self.zone_bodies[zi] = bodies
                ops.append([zi, bodies[0], bodies[1]])
        return ops

    def apply(self, upserts: dict[str, dict[int, Answer]], deletes: frozenset[str] | set[str],
              ) -> tuple[list[list[Any]], list[bytes]]:
        """Apply a compiler delta; returns the encoded (upserts, deletes) to publish."""
        up: list[list[Any]] = []
        dels: list[bytes] = []
        for name in deletes:
            key = wire.name_from_text(name.lower())
            if self.names.pop(key, None) is not None:
                dels.append(key)
        for name, inner in upserts.items():
            key, bodies = encode_name(name, inner)
            self.names[key] = bodies
            up.append([key, bodies])
        return up, dels

    def snapshot(self) -> dict[str, Any]:
        return {"synced": self.synced, "zones": self.zone_bodies,
                "names": [[k, v] for k, v in self.names.items()]}
