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
    entries, in the block's plugin order; ``attach`` entries add theirs)."""

    def __init__(self, plan: Plan, econf: dict[str, Any]) -> None:
        from fastdns.plugins.runtime import plugin, resolve

        self.plan = plan
        self.listeners = econf["listeners"]
        self._zones = [sorted(li["zones"], key=lambda zb: -len(zb[0])) for li in self.listeners]
        self.resolvers: dict[int, list[Any]] = {}
        self.on_error: Callable[[int, wire.Query, int, str], None] | None = None
        self.minimal = [bool(bc.get("minimal")) for bc in econf["blocks"]]
        self.bufsize = [int(bc.get("bufsize") or 0) for bc in econf["blocks"]]
        for bi, server in enumerate(plan.servers):
            chain: list[Any] = []
            for pc in server.plugins:
                ref = plugin(pc.name).handler
                if ref is not None:
                    r = resolve(ref)(server, pc.conf)
                    if r is not None:
                        chain.append(r)
            self.resolvers[bi] = chain

    def add_resolver(self, block: int, resolver: Any) -> None:
        """Plugins living elsewhere (the forwarder) register themselves here."""
        self.resolvers.setdefault(block, []).append(resolver)

    def block_of(self, listener: int, q: wire.Query) -> int | None:
        key = q.key
        for zone, bi in self._zones[listener]:
            if key.endswith(zone) and (len(key) == len(zone) or _label_boundary(key, len(key) - len(zone))):
                return bi
        return None

    def handle(self, listener: int, packet: bytes, reply: Reply, tcp: bool = False) -> None:
        try:
            q = wire.parse_query(packet)
        except wire.FormatError:
            return
        bi = self.block_of(listener, q)
        if bi is not None:
            if self.bufsize[bi]:
                q.cap_udp_size(self.bufsize[bi])
            chain = self.resolvers.get(bi, ())
            for r in chain:
                try:
                    if r.resolve(q, packet, _as(reply, getattr(r, "plugin", ""),
                                                self.minimal[bi]), tcp):
                        return
                except FastDNSError as exc:
                    log.warning("%s: %s", type(r).__name__, exc)
                    reply(wire.response_with_rcode(q, wire.SERVFAIL))
                    self.error(bi, q, wire.SERVFAIL, str(exc))
                    return
            if chain:           # every plugin passed it on: the end of CoreDNS's chain
                reply(wire.response_with_rcode(q, wire.SERVFAIL))
                name = getattr(chain[-1], "plugin", type(chain[-1]).__name__)
                self.error(bi, q, wire.SERVFAIL, f"plugin/{name}: no next plugin found")
                return
        reply(wire.response_with_rcode(q, wire.REFUSED))

    def error(self, block: int, q: wire.Query, rcode: int, text: str) -> None:
        """Report an error a plugin met answering ``q`` (to the ``errors`` plugin, if any)."""
        if self.on_error is not None:
            self.on_error(block, q, rcode, text)


def _as(reply: Reply, plugin: str, minimal: bool) -> Reply:
    """``reply`` telling the worker which plugin wrote the answer (its metrics
    source), with the block's ``minimal`` applied."""
    from fastdns._loop import minimal_response
    from fastdns.plugins.runtime import source_id

    src = source_id(plugin)
    if minimal:
        return lambda data: reply(minimal_response(data), src)  # type: ignore[call-arg]
    return lambda data: reply(data, src)  # type: ignore[call-arg]


def _label_boundary(key: bytes, at: int) -> bool:
    """Is offset ``at`` of wire name ``key`` the start of a label?"""
    pos = 0
    while pos < at:
        pos += 1 + key[pos]
    return pos == at
