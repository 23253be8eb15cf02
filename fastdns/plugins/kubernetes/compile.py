"""Compile the cluster index into answers: ``name → {qtype → Answer}``.

The rules are the Kubernetes DNS specification (kubernetes/dns,
docs/specification.md) as CoreDNS's ``kubernetes`` plugin implements them
(plugin/kubernetes/kubernetes.go, plugin/backend_lookup.go); where the two
differ the compiler does what CoreDNS does, because users replace CoreDNS.

State: the compiler keeps one packed entry per name (:mod:`.encode`: the
encoded bodies of every qtype, zone negatives shared) in a
:class:`~fastdns._packed.PackedStore` (``wire name → bytes`` in one C arena,
dumped as is into worker snapshots), built one unit at a time; :class:`Answer` objects only live while a
unit compiles.  :attr:`ZoneCompiler.entries` is that state, :class:`Delta`
carries changed entries, :attr:`ZoneCompiler.answers` decodes it back
(``name → {qtype → Answer}``) for tests and the reference lookup.

Shape of the answers (:attr:`ZoneCompiler.answers`, :attr:`Delta.upserts`):

* a name present in the dict exists; its inner dict maps qtypes to answers
  and key ``0`` to the answer for every other qtype: NODATA
  (``Answer(NOERROR, (), (soa,))``) almost everywhere, NXDOMAIN where CoreDNS
  answers so for a name that has data of one type only (reverse names for
  non-PTR types, ``dns-version.<zone>`` for non-TXT types);
* a name absent from the dict is NXDOMAIN (:meth:`ZoneCompiler.miss`);
* CoreDNS answers TXT with NXDOMAIN on names that exist without records of
  their own (the apex, ``svc.<zone>``, ``<ns>.svc.<zone>``...): those names
  carry an explicit ``TXT → NXDOMAIN`` entry.

Incremental updates recompile only the units an event touches: one Service
(with its EndpointSlices), one Namespace, one Pod, plus the shared PTR and
pod names they contribute to and ExternalName services chasing a changed
in-zone name.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastdns import wire
from fastdns._packed import PackedStore
from fastdns.wire import pack_names, unpack_names
from fastdns.compiled import (
    AnswersView,
    Delta,
    EntryEncoder,
    decode_answer,
    entry_body,
    entry_qtypes,
)
from fastdns.plugins.kubernetes.index import ClusterIndex, Event
from fastdns.plugins.kubernetes.names import (
    dashed_ip,
    ip_version,
    is_reverse_zone,
    reverse_name,
    under,
    zone_of,
)
from fastdns.plugins.kubernetes.objects import Namespace, Pod, Service
from fastdns.records import (
    AAAA,
    CNAME,
    NOERROR,
    NS,
    NXDOMAIN,
    PTR,
    REFUSED,
    SOA,
    SRV,
    TXT,
    A,
    Answer,
    Record,
)

__all__ = ["DNS_SCHEMA_VERSION", "Answers", "Delta", "ZoneCompiler"]

DNS_SCHEMA_VERSION = "1.1.0"
DNS_VERSION_TTL = 28800
MAX_CNAME_CHAIN = 10
AXFR, IXFR = 252, 251
PTR_FLUSH_EVERY = 256   # services per PTR rebuild during a full compile

Answers = dict[str, dict[int, Answer]]
_SENTINEL_PORTS = ((-1, "", ""),)


class _Batch:
    """Accumulates changed entries so that the last word on a name wins."""

    __slots__ = ("deletes", "upserts")

    def __init__(self) -> None:
        self.upserts: dict[bytes, bytes] = {}
        self.deletes: set[bytes] = set()

    def put(self, key: bytes, entry: bytes) -> None:
        self.upserts[key] = entry
        self.deletes.discard(key)

    def drop(self, key: bytes) -> None:
        self.upserts.pop(key, None)
        self.deletes.add(key)

    def delta(self, encoder: EntryEncoder) -> Delta:
        return Delta(self.upserts, frozenset(self.deletes), encoder)


class _NoBatch(_Batch):
    """For a full compile: the whole store is the result, nothing to record."""

    __slots__ = ()

    def put(self, key: bytes, entry: bytes) -> None:
        pass

    def drop(self, key: bytes) -> None:
        pass


class ZoneCompiler:
    """Compiles a :class:`ClusterIndex` for one ``kubernetes`` block.

    ``conf`` is a :class:`~fastdns.plugins.kubernetes.conf.KubernetesConf`.
    ``ns_addresses`` are the addresses answered for ``ns.dns.<zone>`` (CoreDNS
    uses the pod's own IPs); ``serial`` is the SOA serial (default: now; it
    does not change on every update, unlike CoreDNS's, so that negative
    answers stay put).
    """

    def __init__(self, conf: Any, *, ns_addresses: Iterable[str] = (),
                 serial: int | None = None) -> None:
        self.conf = conf
        self.ttl = int(conf.ttl)
        zones = tuple(z.lower() if z.endswith(".") else z.lower() + "." for z in conf.zones)
        self.zones = zones
        self.forward_zones = tuple(z for z in zones if not is_reverse_zone(z))
        self.reverse_zones = tuple(z for z in zones if is_reverse_zone(z))
        if not self.forward_zones:
            raise ValueError("kubernetes: a non-reverse zone name must be used")
        self.primary = self.forward_zones[0]
        self.allowed_ns = frozenset(conf.namespaces) if conf.namespaces else None
        self.pods_mode = conf.pods
        self.endpoint_pod_names = bool(conf.endpoint_pod_names)
        self.noendpoints = bool(conf.noendpoints)
        self.ignore_empty = bool(conf.ignore_empty_service)
        self.ns_addresses = tuple(ns_addresses)
        self.serial = int(time.time()) & 0xFFFFFFFF if serial is None else serial
        self._soa = {z: self._make_soa(z) for z in zones}
        self._nodata = {z: Answer(NOERROR, (), (s,)) for z, s in self._soa.items()}
        self._nxdomain = {z: Answer(NXDOMAIN, (), (s,)) for z, s in self._soa.items()}
        self._negatives = [(self._nodata[z], self._nxdomain[z]) for z in zones]
        self.encoder = EntryEncoder(self._negatives)
        self._reset(ClusterIndex(getattr(conf, "labels", None),
                                 getattr(conf, "namespace_labels", None)))

    # -- public API --------------------------------------------------------
    def soa(self, zone: str) -> Record:
        """The SOA record of ``zone`` (CoreDNS: ns.dns, hostmaster, 7200 1800 86400, minimum=ttl)."""
        return self._soa[zone]

    def nodata(self, zone: str) -> Answer:
        """NOERROR with no answer and the zone's SOA."""
        return self._nodata[zone]

    def nxdomain(self, zone: str) -> Answer:
        """NXDOMAIN with the zone's SOA in the authority section."""
        return self._nxdomain[zone]

    def zone_for(self, qname: str) -> str | None:
        """The (longest) served zone ``qname`` falls in, or None."""
        return zone_of(qname.lower(), self.zones)

    def miss(self, qname: str, qtype: int) -> Answer | None:
        """The answer for a name absent from the compiled dict (None: not our zone).

        NXDOMAIN, except as CoreDNS: SOA queries get NODATA for any name in
        the zone, and AXFR/IXFR are REFUSED.
        """
        zone = self.zone_for(qname)
        if zone is None:
            return None
        if qtype in (AXFR, IXFR):
            return Answer(REFUSED, (), (), (), True)
        if qtype == SOA:
            return self._nodata[zone]
        return self._nxdomain[zone]

    def lookup(self, qname: str, qtype: int) -> Answer | None:
        """Reference lookup over the encoded state (what a worker's table does),
        decoded back into an :class:`Answer` with dnspython."""
        try:
            key = wire.name_from_text(qname.lower())
        except ValueError:
            return self.miss(qname, qtype)
        entry = self._store.get(key)
        if entry is None:
            return self.miss(qname, qtype)
        if qtype in (AXFR, IXFR):
            return Answer(REFUSED, (), (), (), True)
        zone, body = entry_body(entry, qtype)
        if body is None:
            return None
        if isinstance(body, int):
            return self._negatives[zone][0 if body == 0xFFFF else 1]
        return decode_answer(key, qtype, body)

    @property
    def entries(self) -> PackedStore:
        """The compiled state: wire name → packed entry (a live Mapping: read it,
        do not change it; :meth:`PackedStore.dump` is the snapshot stream)."""
        return self._store

    @property
    def answers(self) -> Answers:
        """The compiled state as ``text name → {qtype: Answer}`` (live, decoded on access)."""
        return AnswersView(self._store, self._negatives)  # type: ignore[return-value]

    def full_delta(self) -> Delta:
        """A Delta standing for the whole current state (``full=True``)."""
        return Delta(self.entries, frozenset(), self.encoder, True)

    @property
    def index(self) -> ClusterIndex:
        """The index the compiled state follows (the one given to :meth:`full`)."""
        return self._index

    def full(self, index: ClusterIndex) -> Answers:
        """Compile everything from ``index``; later :meth:`apply` calls update it in place."""
        enabled = gc.isenabled()
        gc.disable()  # millions of small objects: generational GC passes dominate otherwise
        try:
            return self._full(index)
        finally:
            if enabled:
                gc.enable()

    def _full(self, index: ClusterIndex) -> Answers:
        self._reset(index)
        batch = _NoBatch()
        for z in self.zones:
            self._static(z, batch)
        for ns in sorted(index.namespaces):
            self._recompile_namespace(ns, batch)
        externals = []
        for n, (key, svc) in enumerate(index.services.items()):
            if svc.external:
                externals.append(key)
            else:
                self._recompile_service(key, batch)
            if n % PTR_FLUSH_EVERY == PTR_FLUSH_EVERY - 1:
                self._flush_ptrs(batch)    # bounds the PTR payloads held at once
        for key in externals:
            self._recompile_service(key, batch)
        if self.pods_mode == "verified":
            for key in index.pods:
                self._recompile_pod(key, batch)
        self._flush_ptrs(batch)
        self._propagate(batch, {t for t in self._ext_rdeps if t in self._store})
        self._ptr_cache.clear()
        return self.answers

    def apply(self, event: Event) -> Delta:
        """Apply one change to the index and return the answers it changed."""
        return self.apply_many((event,))

    def apply_many(self, events: Iterable[Event]) -> Delta:
        """Apply a batch of changes atomically: one :class:`Delta` for all of them."""
        idx = self._index
        services: set[tuple[str, str]] = set()
        namespaces: set[str] = set()
        pods: set[tuple[str, str]] = set()
        for ev in events:
            old = idx.apply(ev)
            obj = ev.obj
            idx.touched(obj, old, services, namespaces)
            if isinstance(obj, Namespace):
                if self.pods_mode == "verified":
                    pods.update(k for k in idx.pods if k[0] == obj.key)
            elif isinstance(obj, Pod):
                if self.pods_mode == "verified":
                    pods.add(obj.key)
        batch = _Batch()
        self._ptr_cache.clear()
        for ns in namespaces:
            self._recompile_namespace(ns, batch)
        for key in services:
            self._recompile_service(key, batch)
        for key in pods:
            self._recompile_pod(key, batch)
        self._flush_ptrs(batch)
        self._propagate(batch, set(batch.upserts) | batch.deletes)
        self._ptr_cache.clear()
        return batch.delta(self.encoder)

    # -- state ---------------------------------------------------------------
    def _reset(self, index: ClusterIndex) -> None:
        self._index = index
        #: wire name → packed entry: the one copy of the compiled answers (C arena)
        self._store = PackedStore(len(index.slices) * 8)
        #: unit (service key, ("ns", name), ("static", zone)) → its wire names (wire.pack_names)
        self._units: dict[Any, bytes] = {}
        #: PTR name → the service key(s) contributing to it (a key, or a set of keys)
        self._ptr_contrib: dict[bytes, Any] = {}
        #: service key → the PTR names it contributes to (wire.pack_names)
        self._ptr_of: dict[tuple[str, str], bytes] = {}
        #: PTR names to rebuild at the end of the batch (wire → text)
        self._ptr_dirty: dict[bytes, str] = {}
        #: service key → its PTR payloads, for the services compiled in this batch
        self._ptr_cache: dict[tuple[str, str], dict[str, tuple[bool, tuple[str, ...]]]] = {}
        self._pod_refs: dict[bytes, set[tuple[str, str]]] = {}
        self._pod_of: dict[tuple[str, str], tuple[bytes, ...]] = {}
        self._ext_target: dict[tuple[str, str], bytes] = {}
        self._ext_rdeps: dict[bytes, set[tuple[str, str]]] = {}

    def _make_soa(self, zone: str) -> Record:
        return Record(zone, SOA, min(self.ttl, 300),
                      (f"ns.dns.{zone}", f"hostmaster.{zone}", self.serial, 7200, 1800, 86400,
                       self.ttl))

    def _ns_exposed(self, ns: str) -> bool:
        if self.allowed_ns is not None and ns not in self.allowed_ns:
            return False
        return ns in self._index.namespaces

    def _set(self, name: str, key: bytes, inner: dict[int, Answer], batch: _Batch) -> None:
        """Encode ``name``'s answers; store and record them if the bytes changed."""
        entry = self.encoder.encode(name, key, inner)
        if self._store.put(key, entry):
            batch.put(key, entry)

    def _drop(self, key: bytes, batch: _Batch) -> None:
        if self._store.discard(key):
            batch.drop(key)

    def _replace_unit(self, unit: Any, new: Answers, batch: _Batch) -> None:
        old = set(unpack_names(self._units.pop(unit, b"")))
        keys = []
        for name, inner in new.items():
            key = wire.name_from_text(name)
            old.discard(key)
            self._set(name, key, inner, batch)
            keys.append(key)
        for key in old:
            self._drop(key, batch)
        if keys:
            self._units[unit] = pack_names(keys)

    # -- static names ------------------------------------------------------------
    def _static(self, z: str, batch: _Batch) -> None:
        nodata, nx = self._nodata[z], self._nxdomain[z]
        ttl = self.ttl
        ns_name = f"ns.dns.{z}"
        glue = tuple(Record(ns_name, A if ip_version(ip) == 4 else AAAA, ttl, ip)
                     for ip in self.ns_addresses if ip_version(ip))
        apex = {0: nodata, TXT: nx, SOA: Answer(NOERROR, (self._soa[z],)),
                NS: Answer(NOERROR, (Record(z, NS, ttl, ns_name),), (), glue)}
        out: Answers = {z: apex}
        out[f"dns-version.{z}"] = {
            0: nx, TXT: Answer(NOERROR, (Record(f"dns-version.{z}", TXT, DNS_VERSION_TTL,
                                                (DNS_SCHEMA_VERSION,)),))}
        ns_inner: dict[int, Answer] = {0: nodata, TXT: nx}
        v4 = tuple(r for r in glue if r.rtype == A)
        v6 = tuple(r for r in glue if r.rtype == AAAA)
        if v4:
            ns_inner[A] = Answer(NOERROR, v4)
        if v6:
            ns_inner[AAAA] = Answer(NOERROR, v6)
        out[ns_name] = ns_inner
        if z in self.forward_zones:
            out[f"svc.{z}"] = {0: nodata, TXT: nx}
            out[f"pod.{z}"] = {0: nodata, TXT: nx}
        self._replace_unit(("static", z), out, batch)

    def _recompile_namespace(self, ns: str, batch: _Batch) -> None:
        out: Answers = {}
        if self._ns_exposed(ns):
            for z in self.forward_zones:
                ent = {0: self._nodata[z], TXT: self._nxdomain[z]}
                out[f"{ns}.svc.{z}"] = ent
                if self.pods_mode != "disabled":
                    out[f"{ns}.pod.{z}"] = ent
        self._replace_unit(("ns", ns), out, batch)

    # -- pods (verified) -------------------------------------------------------
    def _recompile_pod(self, key: tuple[str, str], batch: _Batch) -> None:
        pod = self._index.pods.get(key)
        names: list[str] = []
        ip = pod.live_ip if pod is not None else None
        ver = ip_version(ip) if ip else 0
        if ip and ver and self._ns_exposed(key[0]):
            label = dashed_ip(ip)
            for z in self.forward_zones:
                names.append(f"{label}.{key[0]}.pod.{z}")
        old = self._pod_of.pop(key, ())
        for wkey in old:
            refs = self._pod_refs.get(wkey)
            if refs is not None:
                refs.discard(key)
                if not refs:
                    del self._pod_refs[wkey]
                    self._drop(wkey, batch)
        keys = []
        for name, z in zip(names, self.forward_zones):
            wkey = wire.name_from_text(name)
            keys.append(wkey)
            self._pod_refs.setdefault(wkey, set()).add(key)
            rec = Record(name, A if ver == 4 else AAAA, self.ttl, ip)  # type: ignore[arg-type]
            self._set(name, wkey, {0: self._nodata[z], rec.rtype: Answer(NOERROR, (rec,))}, batch)
        if keys:
            self._pod_of[key] = tuple(keys)

    # -- services ----------------------------------------------------------------
    def _recompile_service(self, key: tuple[str, str], batch: _Batch) -> None:
        svc = self._index.services.get(key)
        out: Answers = {}
        ptrs: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self._unlink_external(key)
        if svc is not None and self._ns_exposed(key[0]):
            if svc.external:
                self._compile_external(svc, out)
            else:
                self._compile_service(svc, out, ptrs)
        self._replace_unit(key, out, batch)
        self._ptr_cache[key] = ptrs
        self._set_ptrs(key, ptrs)

    def _service_ptrs(self, key: tuple[str, str]) -> dict[str, tuple[bool, tuple[str, ...]]]:
        """The PTR payloads Service ``key`` contributes (computed again if not in this batch)."""
        ptrs = self._ptr_cache.get(key)
        if ptrs is None:
            ptrs = {}
            svc = self._index.services.get(key)
            if svc is not None and not svc.external and self._ns_exposed(key[0]):
                self._add_service_ptrs(svc, self._endpoints(svc), ptrs)
            self._ptr_cache[key] = ptrs
        return ptrs

    def _add_service_ptrs(self, svc: Service, eps: list[Any],
                          ptrs: dict[str, tuple[bool, tuple[str, ...]]]) -> None:
        ns, name = svc.key
        name = name.lower()
        if not svc.headless:
            base_primary = f"{name}.{ns}.svc.{self.primary}"
            for ip in svc.cluster_ips:
                if ip_version(ip):
                    self._ptr_add(ptrs, ip, True, base_primary)
        for ip, host, _ in eps:
            self._ptr_add(ptrs, ip, False, f"{host}.{name}.{ns}.svc.{self.primary}")

    def _endpoints(self, svc: Service) -> list[tuple[str, str, tuple[tuple[int, str, str], ...]]]:
        """Ready endpoint addresses of ``svc``: ``(ip, hostname label, ports)``."""
        if self.noendpoints:
            return []
        out = []
        publish = svc.spec.publishNotReadyAddresses
        pod_names = self.endpoint_pod_names
        for sl in self._index.slices_of(svc.key):
            if sl.ports:
                ports = tuple((-1 if p.port is None else p.port, (p.name or "").lower(),
                               (p.protocol or "").lower()) for p in sl.ports)
            else:
                ports = _SENTINEL_PORTS
            for ready, addrs, host, pod in sl.entries():
                if not (publish or ready):
                    continue
                if not host and pod_names and pod and len(pod) < 64:
                    host = pod
                for ip in addrs:
                    out.append((ip, (host or dashed_ip(ip)).lower(), ports))
        return out

    def _compile_service(self, svc: Service, out: Answers,
                         ptrs: dict[str, tuple[bool, tuple[str, ...]]]) -> None:
        ns, name = svc.key
        name = name.lower()
        eps = self._endpoints(svc)
        headless = svc.headless
        cluster_ips = [] if headless else [ip for ip in svc.cluster_ips if ip_version(ip)]
        self._add_service_ptrs(svc, eps, ptrs)
        if headless and not eps:
            return  # spec 2.4.1 / CoreDNS: headless without ready endpoints is NXDOMAIN
        if not headless and self.ignore_empty and not eps:
            return  # `ignore empty_service`
        if headless:
            port_list = {(pn, pr): None for _, _, ports in eps for _, pn, pr in ports if pn}
        else:
            sports = svc.spec.ports or ()
            port_list = {((p.name or "").lower(), (p.protocol or "").lower()): None
                         for p in sports if p.name}
        for z in self.forward_zones:
            nodata = self._nodata[z]
            base = f"{name}.{ns}.svc.{z}"
            tnames = {host: f"{host}.{base}" for _, host, _ in eps}
            if headless:
                entries = [(ip, port, pn, pr, tnames[host])
                           for ip, host, ports in eps for port, pn, pr in ports]
            else:
                sports = svc.spec.ports or ()
                plist = tuple((p.port, (p.name or "").lower(), (p.protocol or "").lower())
                              for p in sports) or _SENTINEL_PORTS
                entries = [(ip, port, pn, pr, base) for port, pn, pr in plist
                           for ip in cluster_ips]
            out[base] = self._records(base, entries, nodata)
            for pn, pr in port_list:
                sel = [e for e in entries if e[2] == pn and e[3] == pr]
                if sel:
                    out[f"_{pn}._{pr}.{base}"] = self._records(f"_{pn}._{pr}.{base}", sel, nodata)
                    out.setdefault(f"_{pr}.{base}", {0: nodata})
            hosts: dict[str, list[Any]] = {}
            for ip, host, ports in eps:
                target = tnames[host]
                lst = hosts.setdefault(target, [])
                for port, pn, pr in ports:
                    lst.append((ip, port, pn, pr, target))
            for target, sel in hosts.items():
                if target not in out:
                    out[target] = self._records(target, sel, nodata)

    def _records(self, qname: str, entries: list[Any], nodata: Answer) -> dict[int, Answer]:
        """A/AAAA/SRV answers at ``qname`` for ``(ip, port, pname, proto, target)`` entries.

        As CoreDNS's plugin.A/AAAA/SRV: addresses de-duplicated; SRV priority 0,
        weight floor(100/n) (at least 1) over all n entries, one SRV per
        (target, port), the targets' addresses in the additional section.
        """
        ttl = self.ttl
        inner: dict[int, Answer] = {0: nodata}
        v4: dict[str, Record] = {}
        v6: dict[str, Record] = {}
        srv: dict[tuple[str, int], Record] = {}
        extra: dict[tuple[str, str], Record] = {}
        n = len(entries)
        weight = max(1, math.floor((100.0 / (100.0 * n)) * 100.0)) if n else 1
        for ip, port, _pn, _pr, target in entries:
            six = ":" in ip
            book = v6 if six else v4
            if ip not in book:
                book[ip] = Record(qname, AAAA if six else A, ttl, ip)
            if port == -1:
                continue
            if (target, port) not in srv:
                srv[(target, port)] = Record(qname, SRV, ttl, (0, weight, port, target))
            if (target, ip) not in extra:
                extra[(target, ip)] = (book[ip] if target == qname
                                       else Record(target, AAAA if six else A, ttl, ip))
        if v4:
            inner[A] = Answer(NOERROR, tuple(v4.values()))
        if v6:
            inner[AAAA] = Answer(NOERROR, tuple(v6.values()))
        if srv:
            inner[SRV] = Answer(NOERROR, tuple(srv.values()), (), tuple(extra.values()))
        return inner

    # -- ExternalName --------------------------------------------------------------
    def _compile_external(self, svc: Service, out: Answers) -> None:
        ext = (svc.spec.externalName or "").strip().lower()
        if not ext or ip_version(ext.rstrip(".")):
            return  # CoreDNS: an ExternalName that is an IP (or empty) is NXDOMAIN
        target = ext if ext.endswith(".") else ext + "."
        ns, name = svc.key
        for z in self.forward_zones:
            base = f"{name.lower()}.{ns}.svc.{z}"
            cname = Record(base, CNAME, self.ttl, target)
            inner: dict[int, Answer] = {0: self._nodata[z], CNAME: Answer(NOERROR, (cname,))}
            if target == base:
                out[base] = inner
                continue
            if under(target, z):
                tkey = wire.name_from_text(target)
                self._ext_target[svc.key] = tkey
                self._ext_rdeps.setdefault(tkey, set()).add(svc.key)
                for qt in (A, AAAA):
                    chased = self._chase(target, qt)
                    if chased:
                        inner[qt] = Answer(NOERROR, (cname,) + chased)
            else:
                inner[A] = inner[AAAA] = Answer(NOERROR, (cname,))
            out[base] = inner

    def _chase(self, target: str, qtype: int) -> tuple[Record, ...]:
        key = wire.name_from_text(target)
        entry = self._store.get(key)
        if entry is None or qtype not in entry_qtypes(entry):
            return ()
        _, body = entry_body(entry, qtype)
        if not isinstance(body, bytes):
            return ()                      # a zone negative
        ans = decode_answer(key, qtype, body)
        if ans.rcode != NOERROR or not ans.answer:
            return ()
        if sum(1 for r in ans.answer if r.rtype == CNAME) >= MAX_CNAME_CHAIN:
            return ()
        return ans.answer

    def _unlink_external(self, key: tuple[str, str]) -> None:
        target = self._ext_target.pop(key, None)
        if target is not None:
            deps = self._ext_rdeps.get(target)
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._ext_rdeps[target]

    def _propagate(self, batch: _Batch, changed: set[bytes]) -> None:
        """Recompile ExternalName services chasing a changed in-zone name (bounded)."""
        for _ in range(MAX_CNAME_CHAIN):
            keys = {k for name in changed for k in self._ext_rdeps.get(name, ())}
            if not keys:
                return
            before = {n: self._store.get(n) for k in keys
                      for n in unpack_names(self._units.get(k, b""))}
            for k in keys:
                self._recompile_service(k, batch)
            after = {n for k in keys for n in unpack_names(self._units.get(k, b""))}
            changed = {n for n in set(before) | after if self._store.get(n) != before.get(n)}

    # -- PTR -------------------------------------------------------------------------
    def _ptr_add(self, ptrs: dict[str, tuple[bool, tuple[str, ...]]], ip: str,
                 is_cluster_ip: bool, target: str) -> None:
        if not self.reverse_zones or not ip_version(ip):
            return
        rname = reverse_name(ip)
        if zone_of(rname, self.reverse_zones) is None:
            return
        cur = ptrs.get(rname)
        if cur is None:
            ptrs[rname] = (is_cluster_ip, (target,))
        elif is_cluster_ip and not cur[0]:
            ptrs[rname] = (True, (target,))
        elif cur[0] == is_cluster_ip and target not in cur[1] and not is_cluster_ip:
            ptrs[rname] = (cur[0], cur[1] + (target,))

    def _set_ptrs(self, key: tuple[str, str], ptrs: dict[str, tuple[bool, tuple[str, ...]]]) -> None:
        """Record which PTR names Service ``key`` contributes to; mark them for rebuild."""
        old = set(unpack_names(self._ptr_of.pop(key, b"")))
        contrib = self._ptr_contrib
        dirty = self._ptr_dirty
        keys = []
        for rname in ptrs:
            rkey = wire.name_from_text(rname)
            old.discard(rkey)
            keys.append(rkey)
            dirty[rkey] = rname
            cur = contrib.get(rkey)
            if cur is None:
                contrib[rkey] = key
            elif isinstance(cur, set):
                cur.add(key)
            elif cur != key:
                contrib[rkey] = {cur, key}
        for rkey in old:                   # no longer contributed to by this service
            cur = contrib.get(rkey)
            if cur == key:
                del contrib[rkey]
            elif isinstance(cur, set):
                cur.discard(key)
                if len(cur) == 1:
                    contrib[rkey] = next(iter(cur))
            if rkey not in dirty:
                dirty[rkey] = ""
        if keys:
            self._ptr_of[key] = pack_names(keys)

    def _flush_ptrs(self, batch: _Batch) -> None:
        """Rebuild the PTR names whose contributions may have changed.

        As CoreDNS's reverse lookup: a cluster IP answers with its (first)
        Service; otherwise every endpoint name carrying the IP, de-duplicated.
        """
        for rkey, rname in self._ptr_dirty.items():
            cur = self._ptr_contrib.get(rkey)
            if cur is None:
                self._drop(rkey, batch)
                continue
            if not rname:
                rname = wire.name_to_text(rkey)
            keys = sorted(cur) if isinstance(cur, set) else [cur]
            found = [self._service_ptrs(k).get(rname) for k in keys]
            payloads = [p for p in found if p is not None]
            cluster = [p[1][0] for p in payloads if p[0]]
            if cluster:
                targets: tuple[str, ...] = (cluster[0],)
            else:
                seen: dict[str, None] = {}
                for p in payloads:
                    for t in p[1]:
                        seen.setdefault(t, None)
                targets = tuple(seen)
            if not targets:
                self._drop(rkey, batch)
                continue
            zone = zone_of(rname, self.reverse_zones)
            assert zone is not None
            recs = tuple(Record(rname, PTR, self.ttl, t) for t in targets)
            self._set(rname, rkey, {0: self._nxdomain[zone], PTR: Answer(NOERROR, recs)}, batch)
        self._ptr_dirty = {}
        self._ptr_cache.clear()
