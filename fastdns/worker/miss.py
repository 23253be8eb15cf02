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
from fastdns.config.plan import Plan, ServerPlan
from fastdns.errors import FastDNSError

log = logging.getLogger("fastdns.worker.miss")

Reply = Callable[[bytes], None]


class MissHandler:
    """Routes a miss to its block's Python plugins."""

    def __init__(self, plan: Plan, listeners: list[dict[str, Any]]) -> None:
        self.plan = plan
        self.listeners = listeners
        self._zones = [sorted(li["zones"], key=lambda zb: -len(zb[0])) for li in listeners]
        self.resolvers: dict[int, list[Any]] = {}
        self.on_error: Callable[[int, wire.Query, int, str], None] | None = None
        for bi, server in enumerate(plan.servers):
            self.resolvers[bi] = self._resolvers_for(server)

    def _resolvers_for(self, server: ServerPlan) -> list[Any]:
        out: list[Any] = []
        k8s = server.plugin("kubernetes")
        if k8s is not None and k8s.pods == "insecure":
            out.append(PodReference(k8s))
        return out

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
            chain = self.resolvers.get(bi, ())
            for r in chain:
                try:
                    if r.resolve(q, packet, reply, tcp):
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


def _label_boundary(key: bytes, at: int) -> bool:
    """Is offset ``at`` of wire name ``key`` the start of a label?"""
    pos = 0
    while pos < at:
        pos += 1 + key[pos]
    return pos == at


class PodReference:
    """SRV / AXFR on pod names under ``pods insecure``: the reference rules."""

    def __init__(self, conf: Any) -> None:
        self.conf = conf

    def resolve(self, q: wire.Query, packet: bytes, reply: Reply, tcp: bool) -> bool:
        from fastdns.plugins.kubernetes.podnames import pod_answer

        answer = pod_answer(q.qname, q.qtype, self.conf, None)
        if answer is None:
            return False
        limit = 65535 if tcp else (min(q.udp_size, 1232) if q.udp_size else 512)
        reply(wire.make_response(q, answer, max_size=limit))
        return True
