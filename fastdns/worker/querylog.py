"""The ``log`` plugin in a worker: CoreDNS's query-log lines, written in batches.

The C engine appends ``(listener, query, response, address, seconds, tcp)``
for every query it answers in a block with ``log`` to a list (its log sink);
answers written in Python are added by :func:`fastdns.worker.ops.replied`.
:meth:`QueryLog.drain` turns the list into lines and writes them with one
``write`` per batch.  With no ``log`` in the Corefile the sink is not set and
the engine's cost is one branch per query.

Placeholders are CoreDNS's (plugin/pkg/replacer): ``{remote} {port} {>id}
{type} {class} {name} {proto} {size} {>do} {>bufsize} {rcode} {>rflags}
{rsize} {duration} {>opcode}`` and ``{common}``/``{combined}``.  Lines start
with ``[INFO] `` as CoreDNS's ``log.Info``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, TextIO

import dns.flags
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from fastdns import wire
from fastdns.config.plan import Plan

__all__ = ["QueryLog", "format_entry"]

_FIELD = re.compile(r"\{(>?[a-z]+)\}")
_DENIAL = {3}            # NXDOMAIN; NODATA is NOERROR with no answer


def _klass(rcode: int, ancount: int) -> str:
    if rcode == 0:
        return "success" if ancount else "denial"
    if rcode in _DENIAL:
        return "denial"
    return "error"


def _rflags(flags: int) -> str:
    names = []
    for bit, name in ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"),
                      (0x0080, "ra"), (0x0020, "ad"), (0x0010, "cd")):
        if flags & bit:
            names.append(name)
    return ",".join(names)


def format_entry(fmt: str, query: bytes, response: bytes, addr: Any, seconds: float,
                 tcp: bool) -> tuple[str, str] | None:
    """(line, class) for one answered query; None if the query does not parse."""
    try:
        q = wire.parse_query(query)
    except wire.FormatError:
        return None
    rflags = int.from_bytes(response[2:4], "big") if len(response) >= 4 else 0
    rcode = rflags & 0xF
    ancount = int.from_bytes(response[6:8], "big") if len(response) >= 8 else 0
    host, port = (addr[0], addr[1]) if addr else ("-", 0)
    qflags = int.from_bytes(query[2:4], "big")
    values = {
        "remote": f"[{host}]" if ":" in host else host,
        "port": str(port),
        ">id": str(int.from_bytes(query[:2], "big")),
        "type": dns.rdatatype.to_text(q.qtype),
        "class": dns.rdataclass.to_text(q.qclass),
        "name": q.qname if q.qname.endswith(".") else q.qname + ".",
        "proto": "tcp" if tcp else "udp",
        "size": str(len(query)),
        ">do": "true" if q.do else "false",
        ">bufsize": str(q.udp_size or 512),
        "rcode": dns.rcode.to_text(rcode),
        ">rflags": _rflags(rflags),
        "rsize": str(len(response)),
        "duration": f"{seconds:.9f}".rstrip("0").rstrip(".") + "s" if seconds else "0s",
        ">opcode": dns.opcode.to_text((qflags >> 11) & 0xF),
    }
    line = _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), fmt)
    return line, _klass(rcode, ancount)


class QueryLog:
    """The log rules of every block, and the sink the engine fills."""

    def __init__(self, plan: Plan, out: TextIO | None = None) -> None:
        self.rules: dict[int, list[Any]] = {}
        for bi, server in enumerate(plan.servers):
            conf = server.plugin("log")
            if conf is not None:
                self.rules[bi] = list(conf.rules)
        self.sink: list[tuple[Any, ...]] = []
        self.out = out or sys.stdout
        self.listener_blocks: list[list[tuple[bytes, int]]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    def set_listeners(self, listeners: list[dict[str, Any]]) -> None:
        self.listener_blocks = [sorted(li["zones"], key=lambda zb: -len(zb[0])) for li in listeners]

    def _block(self, li: int, key: bytes) -> int | None:
        if not 0 <= li < len(self.listener_blocks):
            return None
        for zone, bi in self.listener_blocks[li]:
            if key.endswith(zone):
                return bi
        return None

    def drain(self) -> None:
        """Format and write everything in the sink (one write)."""
        if not self.sink:
            return
        entries, self.sink[:] = list(self.sink), []
        lines = []
        for li, query, response, addr, seconds, tcp in entries:
            try:
                key = wire.parse_query(query).key
            except wire.FormatError:
                continue
            bi = self._block(li, key)
            for rule in self.rules.get(bi, ()) if bi is not None else ():
                zone = rule.name if rule.name.endswith(".") else rule.name + "."
                qname = wire.parse_query(query).qname.lower()
                qname = qname if qname.endswith(".") else qname + "."
                if zone != "." and not (qname == zone or qname.endswith("." + zone)):
                    continue
                out = format_entry(rule.format, query, response, addr, seconds, tcp)
                if out is None:
                    break
                line, klass = out
                if "all" in rule.classes or klass in rule.classes:
                    lines.append("[INFO] " + line + "\n")
                break
        if lines:
            data = "".join(lines)
            try:
                if self.out is sys.stdout:
                    os.write(1, data.encode())
                else:
                    self.out.write(data)
                    self.out.flush()
            except OSError:
                pass
