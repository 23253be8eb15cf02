"""The worker side of ``transfer``: AXFR/IXFR answered from the block's compiled tables.

The C engine hands this resolver only AXFR (252) and IXFR (251) questions for
names under the transfer zones (the plugin's ``python`` stage); everything else
stays in C.  CoreDNS's ``Transfer.ServeDNS`` order is kept:

1. UDP → REFUSED;
2. the ``transfer`` line whose zone is the longest match (none: next plugin);
3. the client's address not in its ``to`` → REFUSED;
4. IXFR without exactly one SOA in its authority section → SERVFAIL;
5. the first table stage of the block (``hosts``, ``kubernetes``, ``file``, in
   CoreDNS's order) with the question's name as one of its zones is the
   transferer (none: next plugin, which REFUSEs AXFR in C);
6. IXFR whose serial is the zone's current serial → one message with the SOA;
   otherwise the zone, ``SOA, records..., SOA``, in messages whose records stay
   under 63000 bytes (CoreDNS's batch threshold), each written as one TCP frame.

The records are read back from the worker's own :class:`~fastdns._answers.AnswerTable`
of that stage (:meth:`AnswerTable.keys`, :meth:`AnswerTable.entry`): the answer
records each name of the zone owns, deduplicated (:func:`zone_records`), filtered
per plugin to what CoreDNS's ``Transfer`` of that plugin lists (see README.md).
:func:`attach` (the plugin's ``attach`` entry, run once per configuration) hands
the resolvers the worker's tables and its blocks' stages.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from fastdns import wire
from fastdns.plugins.transfer.conf import TransferConf, longest_match

__all__ = ["TransferResolver", "attach", "zone_records", "stream", "AXFR", "IXFR"]

log = logging.getLogger("fastdns.plugin.transfer")

AXFR, IXFR = 252, 251
SOA, NS, A, AAAA, CNAME, SRV = 6, 2, 1, 28, 5, 33
IN = 1
BATCH = 63000            # CoreDNS: flush before the records of a message pass this
_PSEUDO = 0xFF00         # file's private qtypes (BELOW, FALL...): not records
_HDR = struct.Struct("=HHHHH")      # BodyHdr: flags, rcode, an, ns, ar (native order)
_QHDR = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
_AA = 0x0400
_RR = struct.Struct(">HHIH")

#: Plugins whose table stages can be transferred (CoreDNS's Transferers, plus hosts).
TRANSFERERS = ("hosts", "kubernetes", "file")

Record = tuple[dns.name.Name, int, int, dns.rdata.Rdata]     # owner, type, ttl, rdata


class TransferResolver:
    """One block's ``transfer`` lines (see the module doc)."""

    plugin = "transfer"
    wants_address = True

    def __init__(self, conf: TransferConf) -> None:
        self.conf = conf
        self._sync: Any = None              # the worker's TableSync (.tables by table id)
        self._stages: list[dict[str, Any]] = []
        self._server: Any = None

    def bind(self, sync: Any, stages: list[dict[str, Any]], server: Any) -> None:
        """The worker's tables and this block's stages and plan (from :func:`attach`)."""
        self._sync = sync
        self._stages = [st for st in stages
                        if st.get("kind") == "table" and st.get("plugin") in TRANSFERERS]
        self._server = server

    # -- the query --------------------------------------------------------

    def resolve(self, q: wire.Query, packet: bytes, reply: Any, tcp: bool,
                address: Any = None) -> bool:
        if q.qtype not in (AXFR, IXFR):
            return False
        found = longest_match(self.conf.xfrs, q.qname)
        if found is None:
            return False
        if not tcp:
            reply(wire.response_with_rcode(q, wire.REFUSED))
            return True
        xfr, _zone = found
        ip = address[0] if address else None
        if not xfr.admits(ip):
            log.info("plugin/transfer: refused %s of %s to %s", _tname(q.qtype), q.qname, ip)
            reply(wire.response_with_rcode(q, wire.REFUSED))
            return True
        serial = 0
        if q.qtype == IXFR:
            serial = _ixfr_serial(packet)
            if serial is None:
                reply(wire.response_with_rcode(q, wire.SERVFAIL))
                return True
        source = self._transferer(q.key)
        if source is None:
            return False                     # no table has this zone: the next plugin
        st, table = source
        zone = dns.name.from_wire(q.key, 0)[0]
        records = zone_records(table, q.key, zone, st["plugin"], self._conf_of(st))
        if records is None or not records or records[0][1] != SOA:
            reply(wire.response_with_rcode(q, wire.SERVFAIL))   # not synced / no SOA yet
            return True
        soa = records[0]
        current = getattr(soa[3], "serial", None)
        if q.qtype == IXFR and serial == current:
            for msg in stream(packet, q, [soa]):
                reply(msg)
            log.info("plugin/transfer: outgoing noop, incremental transfer for up to date "
                     "zone %r to %s for %d SOA serial", q.qname, ip, current)
            return True
        n = 0
        for msg in stream(packet, q, records + [soa]):
            reply(msg)
            n += 1
        log.info("plugin/transfer: outgoing transfer of %d records of zone %r to %s for %s "
                 "SOA serial (%d messages)", len(records) + 1, q.qname, ip, current, n)
        return True

    def _transferer(self, key: bytes) -> tuple[dict[str, Any], Any] | None:
        """The first transferable table stage with the zone ``key`` (wire), and its table."""
        if self._sync is None:
            return None
        for st in self._stages:
            if key in (st.get("zones") or ()):
                table = self._sync.tables.get(st["tid"])
                if table is not None:
                    return st, table
        return None

    def _conf_of(self, st: dict[str, Any]) -> Any:
        try:
            return self._server.plugins[st["pi"]].conf
        except (AttributeError, IndexError, KeyError, TypeError):
            return None


def _tname(qtype: int) -> str:
    return "AXFR" if qtype == AXFR else "IXFR"


def _ixfr_serial(packet: bytes) -> int | None:
    """The serial of the one SOA in an IXFR query's authority section, else None
    (CoreDNS: SERVFAIL)."""
    try:
        msg = dns.message.from_wire(packet, question_only=False, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError):
        return None
    if len(msg.authority) != 1 or len(msg.authority[0]) != 1 \
            or msg.authority[0].rdtype != dns.rdatatype.SOA:
        return None
    return int(list(msg.authority[0])[0].serial)


# ---------------------------------------------------------------------------
# the zone, read back from a table




def _decode(key: bytes, qtype: int, body: bytes, answer_only: bool) -> dns.message.Message | None:
    """The response a stored body gives (``answer_only``: its answer section only,
    the rest left unparsed, which halves the cost for most bodies)."""
    try:
        q = wire.parse_query(_QHDR + key + (qtype or A).to_bytes(2, "big") + b"\x00\x01")
        resp = wire.response_from_body(q, body, 0, 65535)
        if answer_only:
            resp = resp[:8] + b"\x00\x00\x00\x00" + resp[12:]
        return dns.message.from_wire(resp, ignore_trailing=answer_only)
    except Exception:       # a body this code cannot read back: leave it out, keep going
        log.debug("plugin/transfer: cannot decode the body of %r/%d", key, qtype)
        return None


def _add(out: dict[tuple[Any, ...], Record], rrset: Any) -> None:
    for rd in rrset:
        k = (rrset.name, int(rrset.rdtype), rd)
        if k not in out:
            out[k] = (rrset.name, int(rrset.rdtype), int(rrset.ttl), rd)


def _collect(table: Any, zone_key: bytes, referrals: bool,
             qtypes: frozenset[int] | None = None) -> dict[dns.name.Name, list[Record]]:
    """Every record an answer of the table gives for a name of the zone, owned by
    that name (CNAME chains, additional data and negatives' SOA left out); with
    ``referrals`` also the NS and glue of referrals (``file``'s zone cuts)."""
    seen: dict[tuple[Any, ...], Record] = {}
    for key in table.keys():
        if not wire.is_under(key, zone_key) or key != key.lower():
            continue                     # another zone, or file's NXDOMAIN slot (\x02NX...)
        entry = table.entry(key)
        if not entry:
            continue
        owner = dns.name.from_wire(key, 0)[0]
        for qtype, body in entry:
            if qtype >= _PSEUDO or len(body) < _HDR.size or \
                    (qtypes is not None and qtype not in qtypes):
                continue
            flags, rcode, an, ns, ar = _HDR.unpack_from(body)
            referral = referrals and an == 0 and ns > 0 and rcode == 0 and not flags & _AA
            if not an and not referral:
                continue                 # NODATA / NXDOMAIN: no records of its own
            msg = _decode(key, qtype, body, answer_only=not referral)
            if msg is None:
                continue
            for rrset in msg.answer:
                if rrset.name == owner and rrset.rdclass == IN:
                    _add(seen, rrset)
            if referral:
                for rrset in msg.authority:
                    if rrset.rdtype == NS and rrset.name != dns.name.from_wire(zone_key, 0)[0]:
                        _add(seen, rrset)
                for rrset in msg.additional:
                    if rrset.rdtype in (A, AAAA):
                        _add(seen, rrset)
    by_name: dict[dns.name.Name, list[Record]] = {}
    for rec in seen.values():
        by_name.setdefault(rec[0], []).append(rec)
    return by_name


def zone_records(table: Any, zone_key: bytes, zone: dns.name.Name, plugin: str,
                 conf: Any = None) -> list[Record] | None:
    """The zone ``zone_key`` of ``table`` as a transfer lists it: the SOA first, the
    apex's other records, then every other name in DNSSEC order (the closing SOA
    is the caller's).  None when the zone has no SOA (a table not synced yet)."""
    by_name = _collect(table, zone_key, referrals=(plugin == "file"),
                       qtypes=_K8S_QTYPES if plugin == "kubernetes" else None)
    if plugin == "kubernetes":
        by_name = _kubernetes_view(by_name, zone)
    elif plugin == "hosts":
        _hosts_apex(by_name, zone, conf)
    apex = by_name.pop(zone, [])
    soa = [r for r in apex if r[1] == SOA]
    if not soa:
        return None
    rest = [r for r in apex if r[1] != SOA]
    out = soa[:1] + sorted(rest, key=_order)
    for name in sorted(by_name):
        out += sorted(by_name[name], key=_order)
    return out


#: The bodies a kubernetes transfer reads (what _kubernetes_view can keep).
_K8S_QTYPES = frozenset({SOA, NS, A, AAAA, CNAME, SRV, 12})


def _order(r: Record) -> tuple[int, bytes]:
    return (0 if r[1] == NS else r[1], r[3].to_digestable())


def _kubernetes_view(by_name: dict[dns.name.Name, list[Record]],
                     zone: dns.name.Name) -> dict[dns.name.Name, list[Record]]:
    """What CoreDNS's ``kubernetes`` ``Transfer`` lists (plugin/kubernetes/xfr.go):
    the apex SOA and NS, ``ns.dns.<zone>``'s addresses, and per Service: its
    A/AAAA/CNAME; for a ClusterIP service its SRV records (weight 100) on the
    service name and the ``_port._proto`` names; for a headless one the ready
    endpoints' A/AAAA on their own names and the ``_port._proto`` SRV records.
    A reverse zone gets its PTR records (CoreDNS lists nothing sensible there)."""
    out: dict[dns.name.Name, list[Record]] = {}
    nsdns = dns.name.Name((b"ns", b"dns") + zone.labels)
    reverse = zone.is_subdomain(dns.name.from_text("in-addr.arpa.")) or \
        zone.is_subdomain(dns.name.from_text("ip6.arpa."))
    for name, recs in by_name.items():
        rel = name.relativize(zone).labels if name != zone else ()
        if name == zone:
            keep = [r for r in recs if r[1] in (SOA, NS)]
        elif reverse:
            keep = [r for r in recs if r[1] == 12]
        elif name == nsdns:
            keep = [r for r in recs if r[1] in (A, AAAA)]
        elif len(rel) == 3 and rel[2] == b"svc":                  # service
            keep = [r for r in recs if r[1] in (A, AAAA, CNAME)]
            srv = [r for r in recs if r[1] == SRV]
            if any(r[3].target == name for r in srv):             # ClusterIP: on its own name
                keep += [_weight(r, 100) for r in srv if r[3].target == name]
        elif len(rel) == 4 and rel[3] == b"svc" and not rel[0].startswith(b"_"):
            parent = dns.name.Name(name.labels[1:])               # an endpoint: headless only
            svc_addrs = {(r[1], r[3]) for r in by_name.get(parent, ()) if r[1] in (A, AAAA)}
            keep = [r for r in recs if r[1] in (A, AAAA) and (r[1], r[3]) in svc_addrs]
        elif len(rel) == 5 and rel[4] == b"svc" and rel[0].startswith(b"_") \
                and rel[1].startswith(b"_"):                      # _port._proto.service
            parent = dns.name.Name(name.labels[2:])
            keep = [_weight(r, 100) if r[3].target == parent else r
                    for r in recs if r[1] == SRV]
        else:
            keep = []
        if keep:
            out[name] = _dedup(keep)
    return out


def _weight(r: Record, weight: int) -> Record:
    rd = r[3]
    return (r[0], r[1], r[2], rd.replace(weight=weight))


def _dedup(recs: Iterable[Record]) -> list[Record]:
    seen: dict[tuple[Any, ...], Record] = {}
    for r in recs:
        seen.setdefault((r[1], r[3]), r)
    return list(seen.values())


def _hosts_apex(by_name: dict[dns.name.Name, list[Record]], zone: dns.name.Name,
                conf: Any) -> None:
    """``hosts`` has no SOA or NS: the apex gets the ones CoreDNS writes for zones it
    synthesizes (``plugin.SOA`` / ``plugin.NS``: ``ns.dns.<zone>``,
    ``hostmaster.<zone>``), the serial a CRC-32 of the zone's records, so it
    changes exactly when they do."""
    import dns.rdtypes.ANY.NS
    import dns.rdtypes.ANY.SOA

    ttl = int(getattr(conf, "ttl", 3600) or 3600)
    crc = 0
    for name in sorted(by_name):
        for r in sorted(by_name[name], key=_order):
            crc = zlib.crc32(name.to_wire() + _RR.pack(r[1], IN, r[2], 0) + r[3].to_digestable(),
                             crc)
    mname = dns.name.Name((b"ns", b"dns") + zone.labels)
    rname = dns.name.Name((b"hostmaster",) + zone.labels)
    soa = dns.rdtypes.ANY.SOA.SOA(IN, SOA, mname, rname, crc or 1, 7200, 1800, 86400, ttl)
    ns = dns.rdtypes.ANY.NS.NS(IN, NS, mname)
    apex = by_name.setdefault(zone, [])
    apex[:0] = [(zone, SOA, ttl, soa), (zone, NS, ttl, ns)]


# ---------------------------------------------------------------------------
# the messages


def stream(packet: bytes, q: wire.Query, records: list[Record]) -> Iterator[bytes]:
    """The transfer's messages: each the query's ID and question, QR and AA, and the
    next records (uncompressed) while they stay under :data:`BATCH` bytes
    (miekg/dns ``Transfer.Out`` as CoreDNS drives it)."""
    flags = 0x8000 | _AA | (0x0100 if q.rd else 0)
    question = q.qname_wire + struct.pack(">HH", q.qtype, q.qclass)
    batch: list[bytes] = []
    size = 0
    for owner, rtype, ttl, rd in records:
        rdata = rd.to_wire()
        rr = owner.to_wire() + _RR.pack(rtype, IN, ttl, len(rdata)) + rdata
        if batch and size + len(rr) > BATCH:
            yield _message(q.id, flags, question, batch)
            batch, size = [], 0
        batch.append(rr)
        size += len(rr)
    if batch:
        yield _message(q.id, flags, question, batch)


def _message(qid: int, flags: int, question: bytes, rrs: list[bytes]) -> bytes:
    return struct.pack(">HHHHHH", qid, flags, 1, len(rrs), 0, 0) + question + b"".join(rrs)


# ---------------------------------------------------------------------------
# the runtime entries


def handler(server: Any, conf: TransferConf) -> TransferResolver:
    """The plugin's ``handler`` entry: one resolver per block."""
    return TransferResolver(conf)


def attach(worker: Any, plan: Any) -> None:
    """The plugin's ``attach`` entry: give each block's resolver the worker's tables
    (``worker.sync.tables``, replaced by every snapshot: read per transfer) and the
    block's stages (``worker._econf``)."""
    miss = getattr(worker, "miss", None)
    econf = getattr(worker, "_econf", None)
    if miss is None or econf is None:
        return
    for bi, chain in miss.chains.items():
        for _stage, r in chain:
            if isinstance(r, TransferResolver):
                server = plan.servers[bi] if bi < len(plan.servers) else None
                r.bind(worker.sync, econf["blocks"][bi]["stages"], server)
