"""The ``file`` plugin's source: a zone file compiled into a table, as CoreDNS's
``file`` plugin answers it (``plugin/file/lookup.go``, ported here as
:func:`lookup`).

Every name that exists in the zone (its records' owners, and the empty
non-terminals between them and the apex) gets a packed entry with its answer
per qtype, computed by :func:`lookup` at load: CNAME chains inside the zone,
additional A/AAAA for in-zone MX/SRV/SVCB/HTTPS targets, the apex NS in
authority of positive answers, the SOA in authority of negative ones,
referrals at and under zone cuts, DNAME substitution for existing names.

What a name that does not exist gets depends on its *closest encloser*, which
the engine finds (the table stage's ``encloser`` flag, ``_loop.pyx``
``encloser_find``) by stripping labels until a name has an entry:

* an entry that carries :data:`BELOW` answers every name under it with that
  body (a referral under a zone cut; the DNAME under a DNAME owner);
* otherwise ``*.<encloser>``'s entry answers, with the query name as owner
  (wildcard bodies are written with ``C0 0C`` as the owner of the records a
  wildcard owns and no other compression, so they fit behind any question);
* otherwise NXDOMAIN: the body stored under the key :func:`nx_key` (an
  upper-case label, which no lower-cased query name can ever equal) so that
  a reload with a new SOA changes it with the other entries.

Entries whose other-type answer is empty NOERROR/NXDOMAIN (empty
non-terminals) carry :data:`FALL`: with ``fallthrough`` those go on to the
next plugin, as CoreDNS falls through on them.

The file is checked every ``reload`` and recompiled when the SOA serial changed
(``reload_by_mtime``: when its modification time moved forward); only the
entries that changed are published.  A file that no longer parses is logged
and the old answers stay.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from fastdns import wire
from fastdns._packed import PackedStore
from fastdns.compiled import EntryEncoder, pack_bodies, publish_entries
from fastdns.errors import FastDNSError
from fastdns.files import FilePoller
from fastdns.records import NOERROR, NXDOMAIN, SERVFAIL, Answer, Record

__all__ = ["FileSource", "Zone", "lookup", "compile_zone", "nx_key", "BELOW", "FALL",
           "SUCCESS", "NAME_ERROR", "DELEGATION", "NO_DATA", "SERVER_FAILURE"]

log = logging.getLogger("fastdns.plugin.file")

#: Pseudo qtypes of an entry (private-use range; records of these types in a
#: zone file are dropped): the answer of every name *under* the entry's name,
#: and the marker of an entry that falls through.  Kept in step with _loop.pyx.
BELOW = 0xFF00
FALL = 0xFF01
_RESERVED = range(0xFF00, 0xFF10)
_OTHER = 0xFF0F         # the qtype "other" answers are computed for

SUCCESS, NAME_ERROR, DELEGATION, NO_DATA, SERVER_FAILURE = range(5)

T = dns.rdatatype
_STAR = b"*"


def nx_key(origin_wire: bytes) -> bytes:
    """Where a zone's NXDOMAIN body is stored (never equal to a query's key)."""
    return b"\x02NX" + origin_wire


class FileSourceError(FastDNSError):
    """A zone file that cannot be loaded at start-up."""


# ---------------------------------------------------------------------------
# the zone, as CoreDNS's Zone holds it


@dataclass
class Zone:
    """One origin's records: the apex SOA and NS, and the tree of the rest."""

    origin: dns.name.Name
    soa: dns.rrset.RRset | None = None
    ns: dns.rrset.RRset | None = None
    tree: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = field(default_factory=dict)
    parents: set[dns.name.Name] = field(default_factory=set)   # names with a descendant

    @classmethod
    def from_rrsets(cls, origin: str | dns.name.Name, rrsets: list[dns.rrset.RRset]) -> "Zone":
        o = origin if isinstance(origin, dns.name.Name) else dns.name.from_text(origin)
        z = cls(o.canonicalize())
        for rrset in rrsets:
            if rrset.rdclass != dns.rdataclass.IN or rrset.rdtype in _RESERVED:
                continue
            name = rrset.name.canonicalize()
            rt = int(rrset.rdtype)
            if rt == T.SOA:
                z.soa = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype)
                z.soa.update_ttl(rrset.ttl)
                z.soa.add(list(rrset)[-1])          # CoreDNS keeps the last SOA seen
                continue
            if rt == T.NS and name == z.origin:
                z.ns = rrset
                continue
            if rt == T.RRSIG and name == z.origin and _covers(rrset) in (T.SOA, T.NS):
                continue                             # CoreDNS keeps these apart (Apex.SIG*)
            node = z.tree.setdefault(name, {})
            if rt in node:
                node[rt].union_update(rrset)
            else:
                node[rt] = rrset
        for name in z.tree:
            p = name
            while len(p) > 1:
                p = p.parent()
                if p in z.parents:
                    break
                z.parents.add(p)
        return z

    @property
    def serial(self) -> int:
        return int(list(self.soa)[0].serial) if self.soa is not None else -1

    def has_descendant(self, name: dns.name.Name) -> bool:
        return name in self.parents

    def in_zone(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.origin)

    def name_from_right(self, qname: dns.name.Name, i: int) -> tuple[dns.name.Name, bool]:
        """CoreDNS's nameFromRight: the origin plus ``i`` labels of ``qname``."""
        if i <= 0:
            return self.origin, False
        n = len(self.origin) + i
        if n > len(qname):
            return qname, True
        return dns.name.Name(qname.labels[len(qname) - n:]), False


def _covers(rrset: dns.rrset.RRset) -> int:
    return int(list(rrset)[0].type_covered) if len(rrset) else 0


Result = tuple[list[dns.rrset.RRset], list[dns.rrset.RRset], list[dns.rrset.RRset], int]


def _rename(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    out = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype, rrset.covers)
    out.update_ttl(rrset.ttl)
    for rd in rrset:
        out.add(rd)
    return out


def _target(rrset: dns.rrset.RRset) -> dns.name.Name:
    return list(rrset)[0].target.canonicalize()


def _apex_ns(z: Zone) -> list[dns.rrset.RRset]:
    return [z.ns] if z.ns is not None else []


def _soa(z: Zone) -> list[dns.rrset.RRset]:
    return [z.soa] if z.soa is not None else []


def _glue(z: Zone, nsrrs: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """tree.Glue: A and AAAA of in-bailiwick NS targets."""
    out: list[dns.rrset.RRset] = []
    for rrset in nsrrs:
        if rrset.rdtype != T.NS:
            continue
        for rd in rrset:
            t = rd.target.canonicalize()
            if not t.is_subdomain(rrset.name):
                continue
            node = z.tree.get(t)
            if node is None:
                continue
            for rt in (T.A, T.AAAA):
                if rt in node:
                    out.append(node[rt])
    return out


def _additional(z: Zone, answer: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """additionalProcessing: A/AAAA of in-zone MX/SRV/SVCB/HTTPS targets, once each."""
    seen: set[dns.name.Name] = set()
    out: list[dns.rrset.RRset] = []
    for rrset in answer:
        for rd in rrset:
            if rrset.rdtype == T.SRV:
                t = rd.target
            elif rrset.rdtype == T.MX:
                t = rd.exchange
            elif rrset.rdtype in (T.SVCB, T.HTTPS):
                t = rd.target
            else:
                continue
            t = t.canonicalize()
            if not t.is_subdomain(z.origin) or t in seen:
                continue
            seen.add(t)
            node = z.tree.get(t)
            if node is None:
                continue
            for rt in (T.A, T.AAAA):
                if rt in node:
                    out.append(node[rt])
    return out


def _delegation(z: Zone, node: dict[int, dns.rrset.RRset], owner: dns.name.Name,
                qname: dns.name.Name, qtype: int) -> tuple[list, list] | None:
    """delegationFromElem: a referral from a cut (not for DS at the cut itself)."""
    ns = node.get(T.NS)
    if ns is None or (qtype == T.DS and owner == qname):
        return None
    return [ns], _glue(z, [ns])


def _find_delegation(z: Zone, qname: dns.name.Name, qtype: int) -> tuple[list, list] | None:
    i = 1
    while True:
        name, shot = z.name_from_right(qname, i)
        if shot:
            return None
        node = z.tree.get(name)
        if node is not None:
            d = _delegation(z, node, name, qname, qtype)
            if d is not None:
                return d
        if name == qname:
            return None
        i += 1


def _synth_cname(qname: dns.name.Name, dname: dns.rrset.RRset) -> dns.rrset.RRset | None:
    owner = dname.name
    if qname == owner or not qname.is_subdomain(owner):
        return None
    target = list(dname)[0].target
    try:
        new = dns.name.Name(qname.labels[:len(qname) - len(owner)] + target.labels)
    except dns.name.NameTooLong:
        return None
    import dns.rdtypes.ANY.CNAME

    out = dns.rrset.RRset(qname, dns.rdataclass.IN, T.CNAME)
    out.update_ttl(dname.ttl)
    out.add(dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, T.CNAME, new.canonicalize()))
    return out


def _upstream(z: Zone, target: dns.name.Name, qtype: int, loop: int) -> tuple[list, int]:
    """CoreDNS's doLookup (the server asked again for the target): the zone's own
    answer for an in-zone target; nothing for a target outside it (see the
    README: fastdns does not resolve those at compile time)."""
    if not z.in_zone(target):
        return [], SUCCESS
    ans, _ns, _extra, res = lookup(z, target, qtype, loop)
    if res == SERVER_FAILURE:
        return ans, SERVER_FAILURE
    if res == NAME_ERROR:
        return ans, NAME_ERROR
    if not ans:
        return ans, NO_DATA
    return ans, SUCCESS


def _authority(z: Zone, result: int) -> list[dns.rrset.RRset]:
    return _soa(z) if result in (NAME_ERROR, NO_DATA) else _apex_ns(z)


def _external(z: Zone, qname: dns.name.Name, qtype: int, rrs: list[dns.rrset.RRset],
              loop: int) -> Result:
    """externalLookup: follow the CNAME chain inside the zone."""
    target = _target(rrs[0])
    node = z.tree.get(target)
    i = 0
    while True:
        d = _find_delegation(z, target, qtype)
        if d is not None:
            return rrs, d[0], d[1], DELEGATION
        if node is None or qtype == T.NS or (qtype == T.SOA and target == z.origin):
            more, result = _upstream(z, target, qtype, loop + 1)
            rrs = rrs + more
            return rrs, _authority(z, result), _additional(z, rrs), result
        cname = node.get(T.CNAME)
        if cname is None:
            break
        rrs = rrs + [cname]
        target = _target(cname)
        node = z.tree.get(target)
        i += 1
        if i > 8:
            return rrs, _apex_ns(z), _additional(z, rrs), SUCCESS
    got = node.get(qtype)
    if got is not None:
        rrs = rrs + [got]
    return rrs, _apex_ns(z), _additional(z, rrs), SUCCESS


def lookup(z: Zone, qname: dns.name.Name, qtype: int, loop: int = 0) -> Result:
    """CoreDNS's ``Zone.Lookup`` without DNSSEC: (answer, authority, additional, result)."""
    if z.soa is None:
        return [], [], [], SERVER_FAILURE
    qname = qname.canonicalize()
    if qname == z.origin:
        if qtype == T.SOA:
            return _soa(z), _apex_ns(z), [], SUCCESS
        if qtype == T.NS:
            nsrrs = _apex_ns(z)
            return nsrrs, [], _glue(z, nsrrs), SUCCESS
    if loop > 8:
        return [], [], [], SERVER_FAILURE
    found = False
    node: dict[int, dns.rrset.RRset] | None = None
    wild_name: dns.name.Name | None = None
    wild_node: dict[int, dns.rrset.RRset] | None = None
    i = 0
    while True:
        parts, shot = z.name_from_right(qname, i)
        if shot:
            break
        node = z.tree.get(parts)
        if node is None:
            found = False
            if len(parts) > 1:
                wildcard = dns.name.Name((_STAR,) + parts.labels[1:])
                if wildcard in z.tree:
                    wild_node, wild_name = z.tree[wildcard], wildcard
                elif z.has_descendant(wildcard):
                    wild_node, wild_name = None, wildcard
            i += 1
            continue
        found = True
        dname = node.get(T.DNAME)
        if dname is not None:
            cname = _synth_cname(qname, dname)
            if cname is not None:
                if _target(cname) == cname.name:
                    return [], [], [], SERVER_FAILURE
                if qtype == T.CNAME:
                    ans, ns, extra, res = [cname], _apex_ns(z), [], SUCCESS
                else:
                    ans, ns, extra, res = _external(z, qname, qtype, [cname], loop + 1)
                return [dname] + ans, ns, extra, res
        d = _delegation(z, node, parts, qname, qtype)
        if d is not None:
            return [], d[0], d[1], DELEGATION
        i += 1

    if found and node is not None:
        cname = node.get(T.CNAME)
        if cname is not None and qtype != T.CNAME:
            return _external(z, qname, qtype, [cname], loop + 1)
        rrs = node.get(qtype)
        if rrs is None:
            return [], _soa(z), [], NO_DATA
        return [rrs], _apex_ns(z), _additional(z, [rrs]), SUCCESS

    if wild_name is not None and not _closer_ent(z, qname, wild_name):
        if wild_node is None:
            return [], _soa(z), [], NO_DATA
        cname = wild_node.get(T.CNAME)
        if cname is not None and qtype != T.CNAME:
            return _external(z, qname, qtype, [_rename(cname, qname)], loop + 1)
        rrs = wild_node.get(qtype)
        if rrs is None:
            return [], _soa(z), [], NO_DATA
        rrs = _rename(rrs, qname)
        return [rrs], _apex_ns(z), _additional(z, [rrs]), SUCCESS

    return [], _soa(z), [], (SUCCESS if z.has_descendant(qname) else NAME_ERROR)


def _closer_ent(z: Zone, qname: dns.name.Name, wild: dns.name.Name) -> bool:
    """closerENTExists: an empty non-terminal between the wildcard's parent and qname."""
    parent = wild.parent()
    name = qname
    while len(name) > 1:
        name = name.parent()
        if name == parent or not name.is_subdomain(parent):
            return False
        if z.has_descendant(name):
            return True
    return False


# ---------------------------------------------------------------------------
# bodies


def _message(result: Result) -> tuple[int, bool]:
    """ServeDNS: the rcode and AA of a lookup result (-1: a bare SERVFAIL)."""
    ans, _ns, _extra, res = result
    if res == NAME_ERROR:
        return NXDOMAIN, True
    if res == DELEGATION:
        return NOERROR, bool(ans)
    if res == SERVER_FAILURE:
        return (SERVFAIL, True) if ans else (-1, False)
    return NOERROR, True


def _body(key: bytes, qname: dns.name.Name, qtype: int, result: Result) -> bytes:
    """A stored body for the question ``key`` (compressed, as dnspython writes it)."""
    rcode, aa = _message(result)
    if rcode < 0:
        return wire.encode_answer(key, qtype, Answer(SERVFAIL, aa=False))
    q = dns.message.make_query(qname, qtype if qtype < 0xFF00 else T.A, use_edns=False)
    r = dns.message.make_response(q)
    r.flags = dns.flags.QR | (dns.flags.AA if aa else 0)
    r.set_rcode(rcode)
    r.answer, r.authority, r.additional = list(result[0]), list(result[1]), list(result[2])
    return wire.body_from_response(r.to_wire(max_size=65535))


_HDR = struct.Struct(">HHHHHH")


def _any_body(owner: dns.name.Name | None, result: Result) -> bytes:
    """A body that fits behind any question: records owned by ``owner`` get the
    question's name (``C0 0C``), every other name is written in full."""
    rcode, aa = _message(result)
    if rcode < 0:
        return wire.encode_answer(None, 0, Answer(SERVFAIL, aa=False))
    counts = []
    out = bytearray()
    for section in result[:3]:
        n = 0
        for rrset in section:
            own = b"\xc0\x0c" if owner is not None and rrset.name == owner \
                else rrset.name.to_wire()
            for rd in rrset:
                rdata = rd.to_wire()
                out += own + struct.pack(">HHIH", rrset.rdtype, rrset.rdclass, rrset.ttl,
                                         len(rdata)) + rdata
                n += 1
        counts.append(n)
    flags = 0x8000 | (0x0400 if aa else 0) | (rcode & 0xF)
    msg = _HDR.pack(0, flags, 1, *counts) + b"\x00\x00\x01\x00\x01" + bytes(out)
    return wire.body_from_response(msg, True)


# ---------------------------------------------------------------------------
# compilation


def _wire(name: dns.name.Name) -> bytes:
    return name.canonicalize().to_wire()


def _names(z: Zone, skip: list[dns.name.Name]) -> list[dns.name.Name]:
    """The names of the zone that get an entry: the apex, every owner under the
    origin and every empty non-terminal (not those under a longer origin of the
    same line)."""
    out = {z.origin}
    for name in z.tree:
        if name.is_subdomain(z.origin):
            out.add(name)
    for name in z.parents:
        if name.is_subdomain(z.origin):
            out.add(name)
    return sorted(n for n in out if not any(n.is_subdomain(s) for s in skip))


def _cover(z: Zone, name: dns.name.Name) -> tuple[str, dns.rrset.RRset] | None:
    """What answers the names *under* ``name``: the top-most DNAME or zone cut
    (not the apex) at or above it, as CoreDNS's lookup meets them walking down."""
    rel = len(name) - len(z.origin)
    for i in range(0, rel + 1):
        level, _ = z.name_from_right(name, i)
        node = z.tree.get(level)
        if node is None:
            continue
        if T.DNAME in node:
            return "dname", node[T.DNAME]
        if T.NS in node and level != z.origin:
            return "cut", node[T.NS]
    return None


def compile_zone(z: Zone, skip: list[dns.name.Name] = ()) -> dict[bytes, bytes]:  # type: ignore[assignment]
    """``wire name → packed entry`` for every name of the zone (see the module doc)."""
    out: dict[bytes, bytes] = {}
    if z.soa is None:
        return out
    zone_types = {t for node in z.tree.values() for t in node} | {T.SOA, T.NS}
    fixed = {T.CNAME, T.DS, T.NS, T.SOA}
    for name in _names(z, list(skip)):
        key = _wire(name)
        node = z.tree.get(name, {})
        wild = name.labels[:1] == (_STAR,)
        chained = T.CNAME in node or _cover(z, name.parent() if len(name) > len(z.origin)
                                            else name) is not None
        qtypes = set(node) | fixed | (zone_types if chained or wild else set())

        def body(qt: int) -> bytes:
            res = lookup(z, name, qt)
            return _any_body(name, res) if wild else _body(key, name, qt, res)

        other_res = lookup(z, name, _OTHER)
        other = _any_body(name, other_res) if wild else _body(key, name, _OTHER, other_res)
        bodies: dict[int, bytes] = {0: other}
        for qt in sorted(qtypes):
            b = body(qt)
            if b != other:
                bodies[qt] = b
        cover = _cover(z, name)
        if cover is not None:
            kind, rrset = cover
            if kind == "cut":
                below = _any_body(None, ([], [rrset], _glue(z, [rrset]), DELEGATION))
            else:
                below = _any_body(None, ([rrset], _apex_ns(z), [], SUCCESS))
            bodies[BELOW] = below
        if not other_res[0] and other_res[3] in (SUCCESS, NAME_ERROR):
            bodies[FALL] = other
        out[key] = pack_bodies(bodies)
    out[nx_key(_wire(z.origin))] = pack_bodies(
        {0: _any_body(None, ([], _soa(z), [], NAME_ERROR))})
    return out


def _answer_soa(z: Zone) -> tuple[Record, ...]:
    if z.soa is None:
        return ()
    rd = list(z.soa)[0]
    return (Record(z.soa.name.to_text(), T.SOA, z.soa.ttl,
                   (rd.mname.to_text(), rd.rname.to_text(), rd.serial, rd.refresh, rd.retry,
                    rd.expire, rd.minimum)),)


# ---------------------------------------------------------------------------
# the source


class FileSource:
    """One ``file`` line's table: its zones compiled, re-read every ``reload``."""

    def __init__(self, ctx: Any) -> None:
        self.conf = ctx.conf
        self.origins = list(ctx.zones)
        self.on_delta = ctx.on_delta
        self.lock = threading.Lock()
        self.store = PackedStore()
        self.encoder = EntryEncoder([])
        self.synced = False
        self.zones: dict[str, Zone | None] = {o: None for o in self.origins}
        self._mtime: float | None = None
        self._poller: FilePoller | None = None
        self._first_error: Exception | None = None
        self._read_all(start=True)

    # -- reading ---------------------------------------------------------

    def _load(self, origin: str) -> Zone:
        from fastdns.plugins.file.zonefile import load_zone

        return Zone.from_rrsets(origin, load_zone(self.conf.path, origin))

    def _read_all(self, start: bool = False) -> bool:
        """(Re-)read every origin; True if one of them changed."""
        changed = False
        if self.conf.reload_by_mtime:
            try:
                mtime = os.stat(self.conf.path).st_mtime
            except OSError as exc:
                if not start:
                    log.error("plugin/file: failed to stat %r: %s", self.conf.path, exc)
                    return False
                mtime = None
            if not start and (mtime is None or (self._mtime is not None and mtime <= self._mtime)):
                return False
            self._mtime = mtime
        for origin in self.origins:
            from fastdns.plugins.file.zonefile import ZoneFileError

            old = self.zones[origin]
            try:
                z = self._load(origin)
            except OSError as exc:
                if start and self.conf.reload == 0:
                    raise FileSourceError(f"plugin/file: cannot open zone file "
                                          f"{self.conf.path!r}: {exc.strerror or exc}") from None
                log.error("plugin/file: failed to open zone %r in %r: %s", origin,
                          self.conf.path, exc.strerror or exc)
                continue
            except ZoneFileError as exc:
                if start:
                    raise FileSourceError(f"plugin/file: zone {origin}: {exc}") from None
                log.error("plugin/file: parsing zone %r: %s; keeping the answers loaded before",
                          origin, exc)
                continue
            if old is not None and not self.conf.reload_by_mtime and z.serial == old.serial:
                continue
            self.zones[origin] = z
            changed = True
            if not start:
                log.info("plugin/file: successfully reloaded zone %r in %r with %d SOA serial",
                         origin, self.conf.path, z.serial)
        return changed

    def _entries(self) -> dict[bytes, bytes]:
        entries: dict[bytes, bytes] = {}
        origins = [dns.name.from_text(o) for o in self.origins]
        for origin in sorted(origins, key=len):
            z = self.zones[origin.to_text()]
            if z is None:
                continue
            longer = [o for o in origins if len(o) > len(origin) and o.is_subdomain(origin)]
            entries.update(compile_zone(z, longer))
        return entries

    # -- the source protocol -------------------------------------------------

    def zone_answers(self) -> list[tuple[Answer | None, Answer | None]]:
        """The zones' negatives as first loaded (the engine takes NXDOMAIN from the
        table itself, so reloads are seen; these serve only until then)."""
        out: list[tuple[Answer | None, Answer | None]] = []
        for origin in self.origins:
            z = self.zones[origin]
            if z is None or z.soa is None:
                out.append((None, None))
                continue
            soa = _answer_soa(z)
            out.append((Answer(NXDOMAIN, (), soa), Answer(NOERROR, (), soa)))
        return out

    def _publish(self, full: bool) -> None:
        entries = self._entries()
        with self.lock:
            if full:
                self.synced = True
            publish_entries(self.store, entries, self.encoder, self.on_delta, full)

    def start(self) -> None:
        """Publish what was read; then check the file every ``reload`` (0: never)."""
        self._publish(full=True)
        if self.conf.reload > 0:
            self._poller = FilePoller(self.conf.reload, self._reload,
                                      f"plugin/file: reloading {self.conf.path}", "file-reload")

    def _reload(self) -> None:
        if self._read_all():
            self._publish(full=False)

    def stop(self) -> None:
        """Stop watching the file."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
