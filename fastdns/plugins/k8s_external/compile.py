"""Compile a block's Services into k8s_external's answers: ``wire name → packed entry``.

What CoreDNS's *k8s_external* answers (plugin/k8s_external: external.go, apex.go,
msg_to_dns.go; the records come from plugin/kubernetes/external.go), written as table
entries ahead of time, per zone ``Z`` of the stage:

* ``Z``: SOA, NS ``ns1.<apex>.Z`` (with its addresses in the additional section),
  NODATA otherwise; ``<apex>.Z``: NODATA; ``ns1.<apex>.Z``: A/AAAA of the name
  server, NODATA otherwise; other names one label below ``<apex>.Z`` or
  ``ns1.<apex>.Z``: NXDOMAIN.
* ``<ns>.Z`` for every exposed namespace: NODATA.
* a Service with external IPs (``spec.externalIPs``, then the load balancer's
  ingress IPs or host names): ``<svc>.<ns>.Z`` A/AAAA (a host name: a CNAME),
  SRV for every port (target ``<svc>.<ns>.Z``, the address in the additional
  section); ``_<port>._<proto>.<svc>.<ns>.Z`` the same for one named port (also
  spelled without the underscores: CoreDNS strips them); ``*.<svc>.<ns>.Z`` the
  same answers as ``<svc>.<ns>.Z`` (CoreDNS ignores an endpoint label for these).
* ``headless``: for a Service without external IPs, ``<host>.<svc>.<ns>.Z`` per
  ready endpoint (its hostname, the pod name with ``endpoint_pod_names``, else the
  dashed IP); for a headless one also ``<svc>.<ns>.Z`` (every endpoint, SRV targets
  ``<host>.<svc>.<ns>.Z``) and its named ports.
* reverse names of external IPs in a reverse zone of the stage: PTR
  ``<svc>.<ns>.<first zone>``, NXDOMAIN for other types.

Everything else in the zones is absent: the zone's NXDOMAIN (or fallthrough).  TTLs
as CoreDNS: A/AAAA/PTR/SOA/NS and additional addresses the plugin's ``ttl``; SRV and
CNAME records the ``kubernetes`` plugin's ``ttl`` (CoreDNS writes ``msg.Service.TTL``).

Bodies are written here, uncompressed, with the owner of every answer record a
pointer to the question, so one body fits behind any question (``*.<svc>`` names
answer any first label); NODATA/NXDOMAIN are references to the zone's shared bodies.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any

from fastdns import wire
from fastdns._packed import PackedStore
from fastdns.compiled import NODATA_REF, NXDOMAIN_REF, Delta, EntryEncoder
from fastdns.plugins.kubernetes.index import ClusterIndex, Event
from fastdns.plugins.kubernetes.names import dashed_ip, ip_version, reverse_name, zone_of
from fastdns.plugins.kubernetes.objects import EndpointSlice, Namespace, Service
from fastdns.records import NOERROR, NXDOMAIN, SOA, Answer, Record

__all__ = ["ExternalCompiler", "HOSTMASTER", "NS_LABEL"]

A, NS, CNAME, PTR, AAAA, SRV = 1, 2, 5, 12, 28, 33
HOSTMASTER = "hostmaster"
NS_LABEL = "ns1"
KINDS = ("Namespace", "Service", "EndpointSlice")
_SENTINEL_PORTS = ((-1, "", ""),)
_PAIR = struct.Struct(">HH")
_RR = struct.Struct(">HHIH")
_SOA_TIMES = (7200, 1800, 86400)

# (host, port, port name, protocol, SRV target): one CoreDNS msg.Service
Rec = tuple[str, int, str, str, str]


def _join(label: str, zone: str) -> str:
    return f"{label}." if zone == "." else f"{label}.{zone}"


def _fqdn(name: str) -> str:
    return name.lower() if name.endswith(".") else name.lower() + "."


def _rdata(rtype: int, rdata: Any) -> bytes:
    if rtype == A:
        return socket.inet_pton(socket.AF_INET, rdata)
    if rtype == AAAA:
        return socket.inet_pton(socket.AF_INET6, rdata)
    if rtype in (CNAME, NS, PTR):
        return wire.name_from_text(rdata)
    if rtype == SRV:
        prio, weight, port, target = rdata
        return struct.pack(">HHH", prio, weight, port) + wire.name_from_text(target)
    if rtype == SOA:
        mname, rname, *times = rdata
        return wire.name_from_text(mname) + wire.name_from_text(rname) + struct.pack(">5I", *times)
    raise ValueError(f"rtype {rtype}")


def _body(answer: list[tuple[int, int, Any]],
          additional: list[tuple[str, int, int, Any]] = ()) -> bytes:  # type: ignore[assignment]
    """A stored body: ``answer`` records ``(rtype, ttl, rdata)`` owned by the question
    (a pointer to it), ``additional`` ``(name, rtype, ttl, rdata)``; AA, NOERROR.
    Nothing else is compressed, so the body fits behind any question."""
    out = [struct.pack(">HHHHHH", 0, 0x8400, 1, len(answer), 0, len(additional)),
           b"\x00\x00\x01\x00\x01"]                  # question: the root, A IN (replaced)
    for rtype, ttl, rdata in answer:
        rd = _rdata(rtype, rdata)
        out.append(b"\xc0\x0c" + _RR.pack(rtype, 1, ttl, len(rd)) + rd)
    for name, rtype, ttl, rdata in additional:
        rd = _rdata(rtype, rdata)
        out.append(wire.name_from_text(name) + _RR.pack(rtype, 1, ttl, len(rd)) + rd)
    return wire.body_from_response(b"".join(out), any_qname=True)


def _entry(zone: int, bodies: dict[int, bytes | int]) -> bytes:
    """A packed entry (:mod:`fastdns.compiled`): a body, or a zone reference, per qtype."""
    heads = []
    data = []
    for qtype, b in bodies.items():
        if isinstance(b, int):
            heads.append(_PAIR.pack(qtype, b))
        else:
            heads.append(_PAIR.pack(qtype, len(b)))
            data.append(b)
    return bytes((len(bodies), zone)) + b"".join(heads) + b"".join(data)


class _Batch:
    __slots__ = ("upserts", "deletes")

    def __init__(self) -> None:
        self.upserts: dict[bytes, bytes] = {}
        self.deletes: set[bytes] = set()


class ExternalCompiler:
    """The answers of one ``k8s_external`` table stage, kept current from the objects
    of its block's ``kubernetes`` source (:meth:`full`, then :meth:`apply_many` /
    :meth:`replace`).

    ``zones`` are the stage's zones (absolute; their order is the zone index of the
    table and ``zones[0]`` names PTR targets, as CoreDNS's ``e.Zones[0]``); ``kconf``
    the block's ``kubernetes`` conf (namespaces, labels, endpoint_pod_names, ttl);
    ``ns_addresses`` the server's own addresses (CoreDNS's ``localIPs``).
    """

    def __init__(self, conf: Any, zones: Iterable[str], kconf: Any, *,
                 ns_addresses: Iterable[str] = (), serial: int | None = None) -> None:
        self.conf = conf
        self.zones = tuple(_fqdn(z) if z != "." else "." for z in zones)
        self.apex = conf.apex.lower()
        self.ttl = int(conf.ttl)
        self.headless = bool(conf.headless)
        self.kttl = int(getattr(kconf, "ttl", 5))
        namespaces = tuple(getattr(kconf, "namespaces", ()) or ())
        self.allowed_ns = frozenset(namespaces) if namespaces else None
        self.pod_names = bool(getattr(kconf, "endpoint_pod_names", False))
        self.local_ips = frozenset(ip for ip in ns_addresses if ip_version(ip))
        self.need_slices = self.headless or bool(self.local_ips)
        self.serial = int(time.time()) & 0xFFFFFFFF if serial is None else serial
        self.labels = getattr(kconf, "labels", None)
        self.namespace_labels = getattr(kconf, "namespace_labels", None)
        self._soa = {z: Record(z, SOA, self.ttl, (
            _join(f"{NS_LABEL}.{self.apex}", z), _join(f"{HOSTMASTER}.{self.apex}", z),
            self.serial, *_SOA_TIMES, self.ttl)) for z in self.zones}
        self.negatives = [(Answer(NOERROR, (), (self._soa[z],)),
                           Answer(NXDOMAIN, (), (self._soa[z],))) for z in self.zones]
        self.encoder = EntryEncoder(self.negatives)
        self._reset()

    # -- public ------------------------------------------------------------------
    def zone_answers(self) -> list[tuple[Answer, Answer]]:
        """``(nxdomain, nodata)`` per zone of the stage."""
        return [(nx, nd) for nd, nx in self.negatives]

    @property
    def store(self) -> PackedStore:
        """The compiled state (read under the source's lock)."""
        return self._store

    def full(self, objects: Iterable[Any]) -> Delta:
        """Compile everything from ``objects``; the Delta stands for the whole state."""
        self._reset()
        idx = self.index
        for o in objects:
            if self._wanted(o):
                idx.apply(Event("ADDED", o))
        batch = _Batch()
        for ns in sorted(idx.namespaces):
            self._namespace(ns, batch)
        for key in list(idx.services):
            self._service(key, batch)
        self._flush_ptrs(batch)
        self._static(batch, force=True)
        return Delta(self._store, frozenset(), self.encoder, True)

    def replace(self, objects: Iterable[Any]) -> Delta:
        """The whole state again (a new source for the block): the changes it implies."""
        return self.apply_many(self.index.events_to((o for o in objects if self._wanted(o)),
                                                    KINDS))

    def apply_many(self, events: Iterable[Event]) -> Delta:
        """Apply changes; one Delta with the names they changed."""
        idx = self.index
        services: set[tuple[str, str]] = set()
        namespaces: set[str] = set()
        for ev in events:
            obj = ev.obj
            if not self._wanted(obj):
                continue
            idx.touched(obj, idx.apply(ev), services, namespaces)
        batch = _Batch()
        for ns in namespaces:
            self._namespace(ns, batch)
        for key in services:
            self._service(key, batch)
        self._flush_ptrs(batch)
        self._static(batch)
        return Delta(batch.upserts, frozenset(batch.deletes), self.encoder)

    # -- state ---------------------------------------------------------------------
    def _reset(self) -> None:
        self.index = ClusterIndex(self.labels, self.namespace_labels)
        self._store = PackedStore()
        self._units: dict[Any, tuple[bytes, ...]] = {}
        self._ptr_of: dict[tuple[str, str], tuple[str, ...]] = {}
        self._ptr_by: dict[str, set[tuple[str, str]]] = {}
        self._ptr_dirty: set[str] = set()
        #: services with a ready endpoint at one of the server's addresses (CoreDNS's
        #: nsAddrs): key → the addresses they give the name server
        self._dns: dict[tuple[str, str], tuple[str, ...]] = {}
        self._glue: tuple[str, ...] | None = None

    def _wanted(self, obj: Any) -> bool:
        if isinstance(obj, EndpointSlice):
            return self.need_slices
        return isinstance(obj, (Service, Namespace))

    def _exposed(self, ns: str) -> bool:
        if self.allowed_ns is not None and ns not in self.allowed_ns:
            return False
        return ns in self.index.namespaces

    def _replace_unit(self, unit: Any, entries: dict[bytes, bytes], batch: _Batch) -> None:
        old = set(self._units.pop(unit, ()))
        for key, entry in entries.items():
            old.discard(key)
            if self._store.put(key, entry):
                batch.upserts[key] = entry
                batch.deletes.discard(key)
        for key in old:
            if self._store.discard(key):
                batch.upserts.pop(key, None)
                batch.deletes.add(key)
        if entries:
            self._units[unit] = tuple(entries)

    @staticmethod
    def _put(out: dict[bytes, bytes], name: str, entry: bytes) -> None:
        try:
            out[wire.name_from_text(name)] = entry
        except ValueError:
            pass                          # longer than a DNS name can be: never asked

    # -- the apex --------------------------------------------------------------------
    def _glue_addresses(self) -> tuple[str, ...]:
        """The name server's addresses, as CoreDNS's ``ExternalAddress``: the external
        IPs (or, with ``headless``, the endpoints of a headless service) of the
        services whose endpoints are the server's own addresses, else those addresses."""
        if not self._dns:
            return tuple(sorted(self.local_ips, key=lambda ip: (ip_version(ip), ip)))
        seen: dict[str, None] = {}
        for key in sorted(self._dns):
            for ip in self._dns[key]:
                seen.setdefault(ip, None)
        return tuple(seen)

    def _static(self, batch: _Batch, force: bool = False) -> None:
        glue = self._glue_addresses()
        if glue == self._glue and not force:
            return
        self._glue = glue
        ttl = self.ttl
        for zi, z in enumerate(self.zones):
            out: dict[bytes, bytes] = {}
            host = _join(f"{NS_LABEL}.{self.apex}", z)
            addrs = [(A if ip_version(ip) == 4 else AAAA, ip) for ip in glue]
            soa = self._soa[z]
            self._put(out, z, _entry(zi, {
                SOA: _body([(SOA, soa.ttl, soa.rdata)]),
                NS: _body([(NS, ttl, host)], [(host, t, ttl, ip) for t, ip in addrs]),
                0: NODATA_REF}))
            self._put(out, _join(self.apex, z), _entry(zi, {0: NODATA_REF}))
            inner: dict[int, bytes | int] = {}
            for rtype in (A, AAAA):
                recs = [(t, ttl, ip) for t, ip in addrs if t == rtype]
                if recs:
                    inner[rtype] = _body(recs)
            inner[0] = NODATA_REF
            self._put(out, host, _entry(zi, inner))
            for parent in (_join(self.apex, z), host):
                self._put(out, "*." + parent, _entry(zi, {0: NXDOMAIN_REF}))
            self._replace_unit(("static", z), out, batch)

    # -- namespaces --------------------------------------------------------------------
    def _namespace(self, ns: str, batch: _Batch) -> None:
        out: dict[bytes, bytes] = {}
        if self._exposed(ns) and ns.lower() != self.apex:
            for zi, z in enumerate(self.zones):
                self._put(out, _join(ns.lower(), z), _entry(zi, {0: NODATA_REF}))
        self._replace_unit(("ns", ns), out, batch)

    # -- services ------------------------------------------------------------------------
    def _endpoints(self, svc: Service) -> list[tuple[str, str, tuple[tuple[int, str, str], ...]]]:
        """Ready endpoint addresses: ``(ip, host label, ports)``, ports as CoreDNS
        converts a slice's (a slice without ports: one port -1)."""
        out = []
        publish = svc.spec.publishNotReadyAddresses
        for sl in self.index.slices_of(svc.key):
            if sl.ports:
                ports = tuple((-1 if p.port is None else p.port, (p.name or "").lower(),
                               (p.protocol or "").lower()) for p in sl.ports)
            else:
                ports = _SENTINEL_PORTS
            for ready, addrs, host, pod in sl.entries():
                if not (ready or publish):
                    continue
                if not host and self.pod_names and pod and len(pod) < 64:
                    host = pod
                for ip in addrs:
                    out.append((ip, (host or dashed_ip(ip)).lower(), ports))
        return out

    def _track_dns(self, key: tuple[str, str], svc: Service | None) -> None:
        """Whether ``svc`` is the server's own service (an endpoint at a local IP)."""
        self._dns.pop(key, None)
        if svc is None or not self.local_ips:
            return
        ips: list[str] = []
        found = False
        for sl in self.index.slices_of(key):
            entries = [(ready, addrs) for ready, addrs, _, _ in sl.entries() if ready]
            if not any(ip in self.local_ips for _, addrs in entries for ip in addrs):
                continue
            found = True
            if self.headless and svc.headless:
                ips.extend(ip for _, addrs in entries for ip in addrs)
        if not found:
            return
        if not (self.headless and svc.headless):
            ips = list(svc.external_ips)
        self._dns[key] = tuple(ip for ip in dict.fromkeys(ips) if ip_version(ip))

    def _service(self, key: tuple[str, str], batch: _Batch) -> None:
        svc = self.index.services.get(key)
        ns, name = key[0].lower(), key[1].lower()
        self._track_dns(key, svc)
        self._set_ptrs(key, svc)
        out: dict[bytes, bytes] = {}
        if svc is not None and self._exposed(key[0]) and ns != self.apex:
            ext = svc.external_ips
            ports = tuple((p.port, (p.name or "").lower(), (p.protocol or "").lower())
                          for p in svc.spec.ports or ()) or _SENTINEL_PORTS
            for zi, z in enumerate(self.zones):
                base = _join(f"{name}.{ns}", z)
                if ext:
                    recs = [(h, port, pn, pr, base) for h in ext for port, pn, pr in ports]
                    entry = self._records(zi, recs)
                    self._put(out, base, entry)
                    self._put(out, "*." + base, entry)
                    self._ports(out, zi, base, recs)
                elif self.headless:
                    eps = self._endpoints(svc)
                    recs = [(ip, port, pn, pr, f"{h}.{base}")
                            for ip, h, eports in eps for port, pn, pr in eports]
                    if svc.headless and recs:
                        self._put(out, base, self._records(zi, recs))
                        self._ports(out, zi, base, recs)
                    hosts: dict[str, list[Rec]] = {}
                    for r in recs:
                        hosts.setdefault(r[4], []).append(r)
                    for target, sel in hosts.items():
                        self._put(out, target, self._records(zi, sel))
        self._replace_unit(key, out, batch)

    def _ports(self, out: dict[bytes, bytes], zi: int, base: str, recs: list[Rec]) -> None:
        """``_port._proto.<base>`` (and its spellings without underscores) per named port."""
        pairs = dict.fromkeys((pn, pr) for _, _, pn, pr, _ in recs if pn and pr)
        for pn, pr in pairs:
            entry = self._records(zi, [r for r in recs if r[2] == pn and r[3] == pr])
            for p in (f"_{pn}", pn):
                for q in (f"_{pr}", pr):
                    self._put(out, f"{p}.{q}.{base}", entry)

    def _records(self, zi: int, recs: list[Rec]) -> bytes:
        """The entry of a name answering ``recs`` (CoreDNS's a(), aaaa(), srv())."""
        ttl, kttl = self.ttl, self.kttl
        a: list[tuple[int, int, Any]] = []
        aaaa: list[tuple[int, int, Any]] = []
        seen: set[tuple[int, str]] = set()
        for host, *_ in recs:
            v = ip_version(host)
            item = (v, host)
            if item in seen:
                continue
            seen.add(item)
            if v == 4:
                a.append((A, ttl, host))
            elif v == 6:
                aaaa.append((AAAA, ttl, host))
            else:
                cname = (CNAME, kttl, _fqdn(host))
                a.append(cname)
                aaaa.append(cname)
        n = len(recs)
        weight = max(1, math.floor(100.0 / (100.0 * n) * 100.0)) if n else 1
        srv: list[tuple[int, int, Any]] = []
        extra: list[tuple[str, int, int, Any]] = []
        dup_srv: set[tuple[str, int]] = set()
        dup_addr: set[tuple[str, str]] = set()
        for host, port, _pn, _pr, target in recs:
            if port == -1:
                continue
            v = ip_version(host)
            tgt = target if v else _fqdn(host)
            if (tgt, port) not in dup_srv:
                dup_srv.add((tgt, port))
                srv.append((SRV, kttl, (0, weight, port, tgt)))
            if v and (tgt, host) not in dup_addr:
                dup_addr.add((tgt, host))
                extra.append((tgt, A if v == 4 else AAAA, ttl, host))
        inner: dict[int, bytes | int] = {}
        if a:
            inner[A] = _body(a)
        if aaaa:
            inner[AAAA] = _body(aaaa)
        if srv:
            inner[SRV] = _body(srv, extra)
        inner[0] = NODATA_REF
        return _entry(zi, inner)

    # -- PTR ------------------------------------------------------------------------------
    def _set_ptrs(self, key: tuple[str, str], svc: Service | None) -> None:
        names: list[str] = []
        if svc is not None and (self.allowed_ns is None or self._exposed(key[0])):
            for ip in svc.external_ips:
                if ip_version(ip):
                    rname = reverse_name(ip)
                    if zone_of(rname, self.zones) is not None:
                        names.append(rname)
        old = self._ptr_of.pop(key, ())
        for rname in old:
            by = self._ptr_by.get(rname)
            if by is not None:
                by.discard(key)
                if not by:
                    del self._ptr_by[rname]
            self._ptr_dirty.add(rname)
        for rname in names:
            self._ptr_by.setdefault(rname, set()).add(key)
            self._ptr_dirty.add(rname)
        if names:
            self._ptr_of[key] = tuple(dict.fromkeys(names))

    def _flush_ptrs(self, batch: _Batch) -> None:
        first = self.zones[0]
        for rname in self._ptr_dirty:
            out: dict[bytes, bytes] = {}
            keys = sorted(self._ptr_by.get(rname, ()))
            if keys:
                zi = self.zones.index(zone_of(rname, self.zones))  # type: ignore[arg-type]
                targets = dict.fromkeys(_join(f"{n.lower()}.{ns.lower()}", first) for ns, n in keys)
                self._put(out, rname, _entry(zi, {
                    PTR: _body([(PTR, self.ttl, t) for t in targets]), 0: NXDOMAIN_REF}))
            self._replace_unit(("ptr", rname), out, batch)
        self._ptr_dirty = set()
