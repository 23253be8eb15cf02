"""The Python side of a worker: queries the C engine hands back (misses).

Misses are what the compiled table and the shared cache cannot answer:
forwarding, pod SRV/AXFR under ``pods insecure``, plugins implemented in
Python.  A block with nothing to ask answers REFUSED; a block whose plugins
all pass the query on (``forward``'s ``except``) answers SERVFAIL, as
CoreDNS's "no next plugin found".  Every path answers exactly once through
``reply`` (or drops a message that is not a query).  Errors go to
``on_error(block, query, rcode, text)`` when set (the ``errors`` plugin).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastdns import wire
from fastdns.config.plan import Plan
from fastdns.errors import FastDNSError

log = logging.getLogger("fastdns.worker.miss")

Reply = Callable[[bytes], None]


class MissHandler:
    """Routes a miss to its block's Python plugins (their runtime ``handler``
    entries and what ``attach`` entries add), each at the place of its plugin's
    stage in the block's chain.  A resolver is ``resolve(q, packet, reply, tcp)
    -> bool`` (True: answered through ``reply``); one with ``wants_address = True``
    also gets ``address=`` (the client's ``(host, port, ...)``, None if unknown), one
    with ``wants_lookup = True`` gets ``lookup=`` (:meth:`_lookup_for`: the rest of
    the chain, answering back to the resolver).  When a handler passes a query on and C stages
    come before the next handler, the engine runs them (:meth:`Engine.resume`),
    so a table after a Python plugin is still reached."""

    def __init__(self, plan: Plan, econf: dict[str, Any], engine: Any = None,
                 cache: Any = None) -> None:
        from fastdns.plugins.runtime import plugin, resolve
        from fastdns.worker.cachefill import CachePolicy

        self.plan = plan
        self.engine = engine
        self.cache = cache
        self.listeners = econf["listeners"]
        self._zones = [sorted(li["zones"], key=lambda zb: -len(zb[0])) for li in self.listeners]
        self.on_error: Callable[[int, wire.Query, int, str], None] | None = None
        self.minimal = [bool(bc.get("minimal")) for bc in econf["blocks"]]
        self.bufsize = [int(bc.get("bufsize") or 0) for bc in econf["blocks"]]
        self.nsid: list[bytes | None] = [bc.get("nsid") for bc in econf["blocks"]]
        self.debug = [bool(bc.get("debug")) for bc in econf["blocks"]]
        self._stages = [bc["stages"] for bc in econf["blocks"]]
        self.chains: dict[int, list[tuple[int, Any]]] = {}
        # blocks with a cache: (its stage, policy, key flags); what a Python handler after
        # the cache stage answers is stored, as CoreDNS's cache stores what follows it
        self._fill: dict[int, tuple[int, Any, int]] = {}
        for bi, (server, bc) in enumerate(zip(plan.servers, econf["blocks"])):
            at = next((k for k, st in enumerate(bc["stages"]) if st["kind"] == "cache"), None)
            conf = server.plugin("cache")
            if at is not None and conf is not None and cache is not None:
                self._fill[bi] = (at, CachePolicy(conf), int(bc.get("cache_ns", 0)) << 1)
        for bi, server in enumerate(plan.servers):
            for pi, pc in enumerate(server.plugins):
                ref = plugin(pc.name).handler
                if ref is not None:
                    r = resolve(ref)(server, pc.conf)
                    if r is not None:
                        self._add(bi, self._stage_of(bi, lambda st, pi=pi: st["pi"] == pi), r)

    @property
    def resolvers(self) -> dict[int, list[Any]]:
        """Each block's handlers in chain order."""
        return {bi: [r for _, r in chain] for bi, chain in self.chains.items()}

    def _stage_of(self, block: int, match: Callable[[dict[str, Any]], bool]) -> int:
        stages = self._stages[block] if block < len(self._stages) else []
        for k, st in enumerate(stages):
            if match(st):
                return k
        for k, st in enumerate(stages):
            if st["kind"] == "python":
                return k
        return 0

    def _add(self, block: int, stage: int, resolver: Any) -> None:
        chain = self.chains.setdefault(block, [])
        chain.append((stage, resolver))
        chain.sort(key=lambda sr: sr[0])            # stable: equal stages keep their order

    def add_resolver(self, block: int, resolver: Any, at: str = "forward") -> None:
        """Plugins living elsewhere (the forwarder, loop) register themselves here,
        at the stage of plugin ``at``."""
        self._add(block, self._stage_of(block, lambda st: st["plugin"] == at), resolver)

    def block_of(self, listener: int, q: wire.Query) -> int | None:
        key = q.key
        for zone, bi in self._zones[listener]:
            if wire.is_under(key, zone):
                return bi
        return None

    def _skips(self, block: int, stage: int, q: wire.Query) -> bool:
        """Did C pass this Python stage by (its zones do not hold the name, or it
        takes other query types)?"""
        st = self._stages[block][stage] if stage < len(self._stages[block]) else None
        if st is None or st["kind"] != "python":
            return False
        if st.get("qtypes") and q.qtype not in st["qtypes"]:
            return True
        if st.get("zones") is None:
            return False
        key = q.key
        return not any(wire.is_under(key, z) for z in st["zones"])

    def _c_between(self, block: int, after: int, before: int) -> bool:
        """Are there stages run in C between two handlers' stages?  Strictly between,
        plus the next handler's own stage when that is a C stage (``pods insecure``'s
        resolver sits at the kubernetes *table*: it is reached only when the table
        hands the query back, so the table must run first)."""
        return any(st["kind"] != "python" for st in self._stages[block][after + 1:before + 1])

    def handle(self, listener: int, packet: bytes, reply: Reply, tcp: bool = False,
               address: Any = None, start: int = -1, hint: Any = None) -> None:
        """Answer a miss through ``reply``.  ``start``: the stage of the block's chain
        that handed it over (the engine says; -1: unknown, from the first handler):
        handlers before it were passed in C already.  ``hint``: what the C forwarder
        got for it (``("answer", response, group, upstream)``), for the handler with
        ``takes_hint``."""
        try:
            q = wire.parse_query(packet)
        except wire.FormatError:
            return
        bi = self.block_of(listener, q)
        chain = self.chains.get(bi, ()) if bi is not None else ()
        if bi is None or not chain:
            reply(wire.response_with_rcode(q, wire.REFUSED))
            return
        if self.bufsize[bi]:
            q.cap_udp_size(self.bufsize[bi])
        nstages = len(self._stages[bi])
        i = 0
        if start > 0:
            i = next((j for j, (k, _) in enumerate(chain) if k >= start), len(chain))
        while i < len(chain):
            stage, r = chain[i]
            if self._skips(bi, stage, q):
                i += 1
                continue
            try:
                shaped = _as(reply, getattr(r, "plugin", ""), self.minimal[bi],
                             self.nsid[bi] if q.nsid else None, q, tcp)
                fill = self._fill.get(bi)
                if fill is not None and stage > fill[0] and not getattr(r, "caches_itself", False):
                    shaped = self._filling(fill, q, tcp, shaped)
                kw: dict[str, Any] = {}
                if getattr(r, "wants_address", False):      # acl-like checks (transfer's `to`)
                    kw["address"] = address
                if hint is not None and getattr(r, "takes_hint", False):
                    kw["hint"] = hint
                if getattr(r, "wants_lookup", False):       # dns64: the rest of the chain
                    kw["lookup"] = self._lookup_for(listener, tcp, address, stage)
                answered = r.resolve(q, packet, shaped, tcp, **kw)
                if answered:
                    return
            except FastDNSError as exc:
                log.warning("%s: %s", type(r).__name__, exc)
                reply(wire.response_with_rcode(q, wire.SERVFAIL))
                self.error(bi, q, wire.SERVFAIL, str(exc))
                return
            except Exception as exc:        # a bug in a handler: SERVFAIL, keep serving
                self._failed(bi, r, q, packet, exc)
                reply(wire.response_with_rcode(q, wire.SERVFAIL))
                return
            following = chain[i + 1][0] if i + 1 < len(chain) else nstages
            if self.engine is not None and self._c_between(bi, stage, following):
                data, v = self.engine.resume(listener, packet, stage + 1, tcp, address)
                if data is not None:
                    if data:
                        reply(data, v)  # type: ignore[call-arg]
                    return
                i = next((j for j, (k, _) in enumerate(chain) if k >= v), len(chain))
                continue
            i += 1
        # every plugin passed it on: the end of CoreDNS's chain
        reply(wire.response_with_rcode(q, wire.SERVFAIL))
        name = getattr(chain[-1][1], "plugin", type(chain[-1][1]).__name__)
        self.error(bi, q, wire.SERVFAIL, f"plugin/{name}: no next plugin found")

    def lookup(self, listener: int, packet: bytes, reply: Reply, tcp: bool = False,
               address: Any = None, start: int = 0) -> None:
        """Answer ``packet`` through its block's chain from stage ``start`` on, the C
        stages included (:meth:`Engine.resume`), handing the response to
        ``reply(data)`` instead of the client: CoreDNS's ``nonwriter`` (what the next
        plugins answer, read by the plugin before it) and, from stage 0,
        ``upstream.Lookup`` (the server asking itself).  The answer may come later
        (a forwarded query); a C stage that drops the query (``acl`` ``drop``) makes
        it ``reply(b"")``.  Nothing is sent or counted here: the caller's own reply is."""
        if self.engine is not None:
            data, v = self.engine.resume(listener, packet, start, tcp, address)
            if data is not None:
                reply(data)
                return
            start = v
        self.handle(listener, packet, lambda data, src=0: reply(data), tcp, address,
                    start=start)

    def _lookup_for(self, listener: int, tcp: bool, address: Any, stage: int
                    ) -> Callable[..., None]:
        """The ``lookup`` a resolver with ``wants_lookup`` gets: ``lookup(packet, reply,
        start=None)`` runs :meth:`lookup` for the same client, from the stage after
        the resolver's own (``start=None``) or from ``start`` (0: the whole chain)."""
        def lookup(packet: bytes, reply: Reply, start: int | None = None) -> None:
            self.lookup(listener, packet, reply, tcp, address,
                        stage + 1 if start is None else start)
        return lookup

    def _filling(self, fill: tuple[int, Any, int], q: wire.Query, tcp: bool,
                 reply: Reply) -> Reply:
        """``reply``, storing the answer in the block's cache first (the policy's
        TTL caps apply to what the client gets too, as CoreDNS's cache does)."""
        from fastdns.worker.forwarder import client_limit

        _, policy, flags = fill
        if q.qclass != 1 or q.opcode != 0 or not policy.covers(q.key):
            return reply

        def store(data: bytes) -> None:
            try:
                body = wire.body_from_response(data)
            except wire.FormatError:
                reply(data)
                return
            kind, ttl, body = policy.decide(q.key, body)
            if kind is None:
                reply(data)
                return
            self.cache.put(q.key, q.qtype, 1, flags | (1 if q.do else 0), body, ttl, kind)
            try:
                reply(wire.response_from_body(q, body, 0, client_limit(q, tcp)))
            except (wire.EncodeError, wire.FormatError):
                reply(data)
        return store

    def _failed(self, block: int, r: Any, q: wire.Query, packet: bytes, exc: Exception) -> None:
        """A handler raised: CoreDNS recovers from the panic (SERVFAIL); *debug*
        adds the traceback and the query's packet in its hex dump format."""
        name = getattr(r, "plugin", type(r).__name__)
        if self.debug[block]:
            from fastdns.plugins.debug import hexdump
            log.error("plugin/%s failed on %s %d: %r\n%s", name, q.qname, q.qtype, exc,
                      hexdump(packet), exc_info=exc)
        else:
            log.error("plugin/%s failed on %s %d: %r", name, q.qname, q.qtype, exc)
        self.error(block, q, wire.SERVFAIL, f"plugin/{name}: {exc!r}")

    def error(self, block: int, q: wire.Query, rcode: int, text: str) -> None:
        """Report an error a plugin met answering ``q`` (to the ``errors`` plugin, if any)."""
        if self.on_error is not None:
            self.on_error(block, q, rcode, text)


def _as(reply: Reply, plugin: str, minimal: bool, nsid: bytes | None = None,
        q: wire.Query | None = None, tcp: bool = False) -> Reply:
    """``reply`` telling the worker which plugin wrote the answer (its metrics
    source), with the block's ``minimal`` and ``nsid`` applied."""
    from fastdns._loop import minimal_response, nsid_response
    from fastdns.plugins.runtime import source_id

    src = source_id(plugin)
    if not minimal and nsid is None:
        return lambda data: reply(data, src)  # type: ignore[call-arg]
    from fastdns.worker.forwarder import client_limit

    limit = 65535 if q is None else client_limit(q, tcp)

    def shaped(data: bytes) -> None:
        if minimal:
            data = minimal_response(data)
        if nsid is not None:
            data = nsid_response(data, nsid, limit)
        reply(data, src)  # type: ignore[call-arg]
    return shaped


