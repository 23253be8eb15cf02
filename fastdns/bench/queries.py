"""Query files in dnsperf's format and the work they become.

A query file has one ``name type`` per line (``www.example.com A``); blank
lines and lines starting with ``#`` or ``;`` are skipped.  Names are absolute
(dnsperf's convention).  Every query is encoded once, off the hot path; the
engine only patches the ID.  Plain names (letters, digits, ``-``, ``_``, ``*``)
are encoded here directly, a few microseconds a line (a query file of millions of
unique names loads in seconds); any other spelling (escapes, other bytes) goes
through dnspython, which is also the oracle the tests check the fast path against.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype

from fastdns.errors import BenchError

PKT_MAX = 512  # must match _blast.pxd
_PLAIN = re.compile(r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*\.?\Z")
_OPT = struct.pack("!BHHIH", 0, 41, 1232, 0, 0)        # OPT: root, payload 1232, no flags
_TYPES: dict[str, tuple[int, str] | None] = {}         # mnemonic -> (code, canonical) / bad


def name_wire(name: str) -> bytes | None:
    """The wire form of a plain absolute name (``a.b.c`` or ``a.b.c.``), or None when
    it is not plain or not a valid name (dnspython then decides)."""
    if name == ".":
        return b"\x00"
    if not _PLAIN.match(name):
        return None
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if len(label) > 63:
            return None
        out.append(len(label))
        out += label.encode("ascii")
    out.append(0)
    return bytes(out) if len(out) <= 255 else None


def _qtype(qtype: str) -> tuple[int, str] | None:
    """(code, canonical mnemonic) of a query type, None if it is not one (cached)."""
    if qtype not in _TYPES:
        try:
            rdtype = dns.rdatatype.from_text(qtype)
        except dns.exception.DNSException:
            _TYPES[qtype] = None
        else:
            bad = dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY
            _TYPES[qtype] = None if bad else (int(rdtype), dns.rdatatype.to_text(rdtype))
    return _TYPES[qtype]


@dataclass(frozen=True)
class Query:
    """One question: an absolute name and a type mnemonic."""

    name: str
    qtype: str


def parse_query_lines(lines: list[str], source: str = "<queries>") -> list[Query]:
    """Parse dnsperf-format lines; a bad line raises BenchError naming ``source:line``."""
    out: list[Query] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) != 2:
            raise BenchError(f"{source}:{lineno}: expected 'name type', got {line!r}")
        name, qtype = fields
        t = _qtype(qtype)
        if t is None:
            try:
                dns.rdatatype.from_text(qtype)
            except dns.exception.DNSException:
                raise BenchError(f"{source}:{lineno}: unknown query type {qtype!r}") from None
            raise BenchError(f"{source}:{lineno}: {qtype} is not a query type")
        if name_wire(name) is None:
            try:
                dns.name.from_text(name)
            except dns.exception.DNSException as e:
                raise BenchError(f"{source}:{lineno}: bad name {name!r}: {e}") from None
        out.append(Query(name, t[1]))
    if not out:
        raise BenchError(f"{source}: no queries")
    return out


def read_query_file(path: str | Path) -> list[Query]:
    """Read a dnsperf-format query file (BenchError if missing or malformed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"{path}: cannot read query file: {e}") from None
    return parse_query_lines(text.splitlines(), str(path))


def encode_query(name: str, qtype: str, edns: bool = False) -> tuple[bytes, int]:
    """The query's wire (ID 0, RD set) and the offset just past its question."""
    nw = name_wire(name)
    t = _qtype(qtype)
    if nw is not None and t is not None:
        wire = (struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 1 if edns else 0) + nw
                + struct.pack("!HH", t[0], 1) + (_OPT if edns else b""))
        if len(wire) > PKT_MAX:
            raise BenchError(f"query {name} {qtype} is too long ({len(wire)} bytes)")
        return wire, 12 + len(nw) + 4
    qname = dns.name.from_text(name)
    msg = dns.message.make_query(qname, dns.rdatatype.from_text(qtype), dns.rdataclass.IN,
                                 use_edns=0 if edns else False, payload=1232)
    msg.id = 0
    wire = msg.to_wire()
    qwire = qname.to_wire()
    assert qwire is not None
    qend = 12 + len(qwire) + 4
    if len(wire) > PKT_MAX:
        raise BenchError(f"query {name} {qtype} is too long ({len(wire)} bytes)")
    return wire, qend


@dataclass
class Workload:
    """What the engine sends: packets, candidate chains and lookups.

    A lookup starts at ``item_first[i]``; candidate ``c`` sends packets
    ``cand_pkt[2c]`` and (if not -1) ``cand_pkt[2c+1]`` in parallel, then goes
    on to ``cand_fail[c]`` after NXDOMAIN/NODATA/SERVFAIL or ``cand_done[c]``
    after another negative rcode (-1: the lookup ends).
    """

    packets: bytearray = field(default_factory=bytearray)
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    qends: list[int] = field(default_factory=list)
    cand_pkt: list[int] = field(default_factory=list)
    cand_fail: list[int] = field(default_factory=list)
    cand_done: list[int] = field(default_factory=list)
    item_first: list[int] = field(default_factory=list)
    lookups: bool = False           # True when items are multi-query lookups
    edns: bool = False
    _index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def packet(self, name: str, qtype: str) -> int:
        """Index of the (deduplicated) encoded query for ``name qtype``."""
        key = (name.lower(), qtype)
        idx = self._index.get(key)
        if idx is None:
            wire, qend = encode_query(name, qtype, self.edns)
            idx = len(self.offsets)
            self.offsets.append(len(self.packets))
            self.lengths.append(len(wire))
            self.qends.append(qend)
            self.packets += wire
            self._index[key] = idx
        return idx

    def candidate(self, first: int, second: int = -1, fail: int = -1, done: int = -1) -> int:
        """Add a candidate; returns its index."""
        self.cand_pkt += [first, second]
        self.cand_fail.append(fail)
        self.cand_done.append(done)
        return len(self.cand_fail) - 1

    def engine_args(self) -> tuple:
        """Positional arguments of ``_blast.Blaster``."""
        return (bytes(self.packets), self.offsets, self.lengths, self.qends, self.cand_pkt,
                self.cand_fail, self.cand_done, self.item_first)

    def first_query(self) -> bytes:
        """Wire of the first packet (the probe before a run)."""
        return bytes(self.packets[self.offsets[0]:self.offsets[0] + self.lengths[0]])


def workload_from_queries(queries: list[Query], edns: bool = False) -> Workload:
    """One lookup of one query per line, in file order (as dnsperf sends them)."""
    w = Workload(edns=edns)
    for q in queries:
        w.item_first.append(w.candidate(w.packet(q.name, q.qtype)))
    return w
