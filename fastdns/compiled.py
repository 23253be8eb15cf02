"""Compiled answers: one packed ``bytes`` per name, the format every source of
compiled answers (``kubernetes``, ``hosts``...) hands the runtime.

A compiler (the Kubernetes one, the hosts file reader) builds :class:`~fastdns.records.Answer` objects for one unit at
a time (a Service, a Namespace...), encodes each name's answers here into a
*packed entry* and drops the objects, so the coordinator holds one compact
copy of its data: ``wire name → packed entry``.  A :class:`Delta` carries a
change of that state to the coordinator (:mod:`fastdns.coordinator.answers`).

Packed entry layout (all big-endian)::

    u8 n, u8 zone, n × (u16 qtype, u16 length), bodies...

Each body is a stored body (``fastdns._wire`` format, what the workers'
answer table holds).  A length of :data:`NODATA_REF` / :data:`NXDOMAIN_REF`
stands for the shared NODATA / NXDOMAIN body of compiler zone ``zone``
(written without compression so it fits behind any question), which is what
almost every name answers for qtype 0; those bodies are stored once per zone.

:func:`expand` turns an entry into ``[[qtype, body], ...]`` with the zone
references replaced by copies (what ``AnswerTable.set`` takes); workers load
entries as they are (``AnswerTable.set_packed`` / ``load_packed``); :func:`decode_answer` turns one body back into an ``Answer``
through dnspython (the reference lookup, tests and ExternalName chasing).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastdns import wire
from fastdns.records import (
    AAAA,
    CNAME,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Answer,
    Record,
)

__all__ = [
    "NODATA_REF",
    "NXDOMAIN_REF",
    "AnswersView",
    "Delta",
    "pack_bodies",
    "qname_body",
    "publish_entries",
    "any_question_body",
    "EntryEncoder",
    "decode_answer",
    "entry_body",
    "entry_qtypes",
    "expand",
]

NODATA_REF = 0xFFFF
NXDOMAIN_REF = 0xFFFE
_QHDR = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
_PAIR = struct.Struct(">HH")
_MAX_ENTRIES = 255


def _query(key: bytes, qtype: int) -> Any:
    """A parsed query for wire name ``key`` (the question a body is written behind)."""
    return wire.parse_query(_QHDR + key + (qtype or 1).to_bytes(2, "big") + b"\x00\x01")


class EntryEncoder:
    """Encodes ``{qtype: Answer}`` of one name into a packed entry.

    ``negatives`` is, per compiler zone, its ``(nodata, nxdomain)`` Answer
    objects: an answer that *is* one of them (identity) is stored as a
    reference to the zone's shared body instead of a copy.
    """

    def __init__(self, negatives: list[tuple[Answer, Answer]]) -> None:
        self.negatives = negatives
        self.shared: list[tuple[bytes, bytes]] = [
            (wire.encode_answer(None, 0, nd), wire.encode_answer(None, 0, nx))
            for nd, nx in negatives]
        self._ref: dict[int, tuple[int, int]] = {}
        for zi, (nd, nx) in enumerate(negatives):
            self._ref[id(nd)] = (zi, NODATA_REF)
            self._ref[id(nx)] = (zi, NXDOMAIN_REF)

    def encode(self, name: str, key: bytes, inner: dict[int, Answer]) -> bytes:
        """The packed entry of ``name`` (text) / ``key`` (its wire form)."""
        if not inner or len(inner) > _MAX_ENTRIES:
            raise ValueError(f"{name}: {len(inner)} answers (1..{_MAX_ENTRIES})")
        zone = -1
        heads: list[bytes] = []
        bodies: list[bytes] = []
        query = None
        for qtype, ans in inner.items():
            ref = self._ref.get(id(ans))
            if ref is not None and (zone == -1 or ref[0] == zone):
                zone = ref[0]
                heads.append(_PAIR.pack(qtype, ref[1]))
                continue
            if query is None:
                query = _query(key, 1)
            b = wire.ResponseBuilder(query, rcode=ans.rcode, aa=ans.aa)
            for sec, rrs in ((1, ans.answer), (2, ans.authority), (3, ans.additional)):
                for rr in rrs:
                    b.add(sec, None if rr.name == name else rr.name, rr.rtype, rr.ttl, rr.rdata)
            body = wire.body_from_response(b.to_wire(65535))
            if len(body) >= NXDOMAIN_REF:
                raise ValueError(f"{name}: answer of type {qtype} too large to store")
            heads.append(_PAIR.pack(qtype, len(body)))
            bodies.append(body)
        return bytes((len(heads), max(zone, 0))) + b"".join(heads) + b"".join(bodies)


def pack_bodies(bodies: Mapping[int, bytes]) -> bytes:
    """A packed entry of stored bodies already encoded (``qtype → body``; 0: every
    other type), for sources that write their answers' wire form themselves."""
    if not bodies or len(bodies) > _MAX_ENTRIES:
        raise ValueError(f"{len(bodies)} bodies (1..{_MAX_ENTRIES})")
    for body in bodies.values():
        if len(body) >= NXDOMAIN_REF:
            raise ValueError("body too large to store")
    return (bytes((len(bodies), 0)) + b"".join(_PAIR.pack(t, len(b)) for t, b in bodies.items())
            + b"".join(bodies.values()))


def qname_body(rcode: int, aa: bool, rrs: list[tuple[int, int, int, bytes]]) -> bytes:
    """A stored body whose records are all owned by the question's name, whatever
    it is (a wildcard's answers): ``rrs`` are ``(rtype, rclass, ttl, rdata)``; the
    owners are written as a pointer to the question, nothing else is compressed."""
    return any_question_body(rcode, aa, [[(None, *rr) for rr in rrs], [], []])


def any_question_body(rcode: int, aa: bool,
                      sections: list[list[tuple[bytes | None, int, int, int, bytes]]]) -> bytes:
    """A stored body that fits behind any question: ``sections`` are the answer,
    authority and additional records as ``(owner, rtype, rclass, ttl, rdata)``, an
    owner of None being the question's name (written as a pointer to it); other
    names, in owners and rdata, are written in full (uncompressed wire)."""
    out = bytearray(struct.pack(">HHHHHH", 0, 0x8000 | (0x0400 if aa else 0) | (rcode & 0xF),
                                1, *(len(sec) for sec in sections)))
    out += b"\x00\x00\x01\x00\x01"                  # the question: any name, in its place
    for sec in sections:
        for owner, rtype, rclass, ttl, rdata in sec:
            out += (b"\xc0\x0c" if owner is None else owner) \
                + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata
    return wire.body_from_response(bytes(out), True)


def publish_entries(store: Any, entries: Mapping[bytes, bytes], encoder: Any,
                    on_delta: Any, full: bool) -> bool:
    """Bring a source's ``store`` (a :class:`fastdns._packed.PackedStore`) to ``entries``
    and tell ``on_delta`` (a full :class:`Delta` when ``full``, else the names that
    changed or went, if any).  The caller holds the source's lock.  Returns whether
    anything was published."""
    if full:
        for key, entry in entries.items():
            store.put(key, entry)
        on_delta(Delta(store, frozenset(), encoder, True))
        return True
    removed = frozenset(k for k in store.keys() if k not in entries)
    changed = {k: e for k, e in entries.items() if store.get(k) != e}
    for k in removed:
        store.discard(k)
    for k, e in changed.items():
        store.put(k, e)
    if changed or removed:
        on_delta(Delta(changed, removed, encoder))
        return True
    return False


def entry_qtypes(entry: bytes) -> list[int]:
    """The qtypes an entry answers (0 = every other type)."""
    return [_PAIR.unpack_from(entry, 2 + 4 * i)[0] for i in range(entry[0])]


def _walk(entry: bytes) -> Iterator[tuple[int, int, int]]:
    """``(qtype, offset, length)`` of each body; offset -1 for a zone reference."""
    n = entry[0]
    off = 2 + 4 * n
    for i in range(n):
        qtype, ln = _PAIR.unpack_from(entry, 2 + 4 * i)
        if ln >= NXDOMAIN_REF:
            yield qtype, -1, ln
        else:
            yield qtype, off, ln
            off += ln


_HEADS = [struct.Struct(f">{2 * n}H") for n in range(_MAX_ENTRIES + 1)]


def expand(entry: bytes, shared: list[tuple[bytes, bytes]]) -> list[list[Any]]:
    """``[[qtype, body], ...]`` of ``entry``; zone references become ``shared`` bodies."""
    n = entry[0]
    zone = shared[entry[1]] if shared else (b"", b"")
    heads = _HEADS[n].unpack_from(entry, 2)
    off = 2 + 4 * n
    out: list[list[Any]] = []
    for i in range(0, 2 * n, 2):
        ln = heads[i + 1]
        if ln >= NXDOMAIN_REF:
            out.append([heads[i], zone[0] if ln == NODATA_REF else zone[1]])
        else:
            out.append([heads[i], entry[off:off + ln]])
            off += ln
    return out


def entry_body(entry: bytes, qtype: int) -> tuple[int, Any]:
    """What the entry answers ``qtype`` with, as a worker's table would pick it.

    ``(zone, NODATA_REF | NXDOMAIN_REF)`` for a zone reference,
    ``(zone, body bytes)`` otherwise, ``(zone, None)`` if neither ``qtype``
    nor 0 is present.
    """
    exact = other = None
    for qt, off, ln in _walk(entry):
        val: Any = ln if off < 0 else entry[off:off + ln]
        if qt == qtype:
            exact = val
            break
        if qt == 0:
            other = val
    return entry[1], exact if exact is not None else other


def decode_answer(key: bytes, qtype: int, body: bytes) -> Answer:
    """Turn a stored body back into an :class:`Answer` (parsed by dnspython)."""
    import dns.message
    import dns.rdatatype

    resp = wire.response_from_body(_query(key, qtype), body, 0, 65535)
    msg = dns.message.from_wire(resp)

    def records(section: list[Any]) -> tuple[Record, ...]:
        out = []
        for rrset in section:
            owner = rrset.name.to_text().lower()
            rt = int(rrset.rdtype)
            for rd in rrset:
                out.append(Record(owner, rt, rrset.ttl, _rdata(rt, rd)))
        return tuple(out)

    return Answer(msg.rcode(), records(msg.answer), records(msg.authority),
                  records(msg.additional), bool(msg.flags & 0x0400))


def _rdata(rtype: int, rd: Any) -> Any:
    if rtype in (A, AAAA):
        return rd.address
    if rtype in (CNAME, NS, PTR):
        return rd.target.to_text()
    if rtype == SRV:
        return (rd.priority, rd.weight, rd.port, rd.target.to_text())
    if rtype == SOA:
        return (rd.mname.to_text(), rd.rname.to_text(), rd.serial, rd.refresh, rd.retry,
                rd.expire, rd.minimum)
    if rtype == TXT:
        return tuple(s.decode() for s in rd.strings)
    return rd.to_wire()


class AnswersView(Mapping[str, dict[int, Answer]]):
    """Read-only ``text name → {qtype: Answer}`` over packed entries (decoded on access).

    For tests and the reference lookup; the coordinator reads the packed
    entries directly.  ``negatives`` maps a zone index to its
    ``(nodata, nxdomain)`` Answers.
    """

    def __init__(self, entries: Mapping[bytes, bytes],
                 negatives: list[tuple[Answer, Answer]]) -> None:
        self._entries = entries
        self._negatives = negatives

    @staticmethod
    def _key(name: str) -> bytes | None:
        try:
            return wire.name_from_text(name.lower())
        except ValueError:
            return None

    def __getitem__(self, name: str) -> dict[int, Answer]:
        key = self._key(name)
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            raise KeyError(name)
        return decode_entry(key, entry, self._negatives)  # type: ignore[arg-type]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        return key is not None and key in self._entries

    def __iter__(self) -> Iterator[str]:
        return (wire.name_to_text(k) for k in list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def decode_entry(key: bytes, entry: bytes,
                 negatives: list[tuple[Answer, Answer]]) -> dict[int, Answer]:
    """``{qtype: Answer}`` of a packed entry."""
    out: dict[int, Answer] = {}
    zone = entry[1]
    for qtype, off, ln in _walk(entry):
        if off < 0:
            out[qtype] = negatives[zone][0 if ln == NODATA_REF else 1]
        else:
            out[qtype] = decode_answer(key, qtype, entry[off:off + ln])
    return out


@dataclass(frozen=True, slots=True)
class Delta:
    """One atomic change of the compiled state.

    ``entries``: wire name → packed entry (:class:`EntryEncoder`, :func:`pack_bodies`) to replace;
    ``removed``: wire names to drop.  ``full``: ``entries`` is the whole
    state (a read-only live view of the compiler's store: read it under the
    lock that serialises the compiler, or copy it).  ``encoder`` expands
    entries into the IPC's ``[[qtype, body], ...]``.  :attr:`upserts` /
    :attr:`deletes` are the text-name views (decoded on access, for tests).
    """

    entries: Mapping[bytes, bytes] = field(default_factory=dict)
    removed: frozenset[bytes] = frozenset()
    encoder: EntryEncoder | None = None
    full: bool = False

    def __bool__(self) -> bool:
        return bool(self.full or self.entries or self.removed)

    @property
    def upserts(self) -> Answers:
        """``text name → {qtype: Answer}`` of the changed names (decoded on access)."""
        negatives = self.encoder.negatives if self.encoder is not None else []
        return AnswersView(self.entries, negatives)  # type: ignore[return-value]

    @property
    def deletes(self) -> frozenset[str]:
        """The removed names, as text."""
        return frozenset(wire.name_to_text(k) for k in self.removed)
