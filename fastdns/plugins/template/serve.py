"""The worker side of ``template``: CoreDNS's ``Handler.ServeDNS`` over the block's templates.

Everything is prepared when the resolver is built (once per configuration in
each worker): zones as lower-cased wire names, records without an action as
ready :class:`fastdns.wire.ResponseBuilder` arguments.  Per query:

1. the query name must be under one of the templates' zones (the C engine only
   hands over such names; the check is kept for a direct caller);
2. each template in Corefile order: its zones (longest match gives ``.Zone``),
   class and type (``ANY`` on either side matches), then its regexes in order
   against the lower-cased name, the first that matches wins;
   a template whose zone, class or type does not match is skipped; one whose
   regexes all miss passes the query to the next template when ``fallthrough``
   covers the name, else the answer is SERVFAIL;
3. the matching template answers: ``rcode SERVFAIL`` is a bare SERVFAIL
   (CoreDNS returns the code without a message), otherwise an authoritative
   response with its rendered ``answer``/``authority``/``additional`` records
   and its ``ederror`` option; a template that fails to render (``index`` out of
   range, ``parseInt`` of a bad number, text that is not a record) raises
   :class:`TemplateError`, which the worker answers with SERVFAIL and an
   ``errors`` line, as CoreDNS;
4. every template passed: ``False``, the chain goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from fastdns import wire
from fastdns.errors import FastDNSError
from fastdns.plugins.template.conf import (
    CLASSES, TYPES, RecordTemplate, TemplateConf, TemplatesConf, parse_rr,
)
from fastdns.plugins.template.gotemplate import TemplateData, TemplateExecError

__all__ = ["TemplateResolver", "TemplateError", "builder_args"]

_SERVFAIL = 2
_IN = 1
_ANY = 255
_CLASS_NAME = {v: k for k, v in reversed(list(CLASSES.items()))}
_TYPE_NAME = {v: k for k, v in reversed(list(TYPES.items()))}
_SECTIONS = ("answer", "authority", "additional")


class TemplateError(FastDNSError):
    """A template failed for one query (CoreDNS: SERVFAIL and the error logged)."""


def _wire_name(text: str) -> bytes:
    return wire.name_from_text(text.lower())




def _longest(key: bytes, zones: tuple[tuple[bytes, str], ...]) -> str | None:
    """The longest of ``zones`` holding ``key`` (CoreDNS ``plugin.Zones.Matches``)."""
    best: str | None = None
    size = -1
    for wz, text in zones:
        if len(wz) > size and wire.is_under(key, wz):
            best, size = text, len(wz)
    return best


def builder_args(section: str, rrset: dns.rrset.RRset) -> list[tuple[Any, ...]] | None:
    """``ResponseBuilder.add`` arguments for every record of ``rrset``, or None when
    the builder cannot write it (a class other than IN)."""
    if rrset.rdclass != _IN:
        return None
    owner = rrset.name.to_wire()
    t = int(rrset.rdtype)
    out: list[tuple[Any, ...]] = []
    for rd in rrset:
        if t in (1, 28):
            data: Any = rd.address
        elif t in (2, 5, 12):
            data = rd.target.to_wire()
        elif t == 33:
            data = (rd.priority, rd.weight, rd.port, rd.target.to_wire())
        elif t == 6:
            data = (rd.mname.to_wire(), rd.rname.to_wire(), rd.serial, rd.refresh, rd.retry,
                    rd.expire, rd.minimum)
        elif t == 16:
            data = tuple(rd.strings)
        else:
            data = rd.to_wire()
        out.append((section, owner, t, rrset.ttl, data))
    return out


class _Record:
    """One record template: ``args`` ready for the builder when it has no action."""

    __slots__ = ("section", "tmpl", "rrset", "args")

    def __init__(self, section: str, rec: RecordTemplate) -> None:
        self.section = section
        self.tmpl = rec.template
        self.rrset = parse_rr(rec.static) if rec.static is not None else None
        self.args = builder_args(section, self.rrset) if self.rrset is not None else None

    def render(self, data: TemplateData | None) -> tuple[dns.rrset.RRset, list | None]:
        if self.rrset is not None:
            return self.rrset, self.args
        assert data is not None
        try:
            text = self.tmpl.render(data)
        except TemplateExecError as exc:
            raise TemplateError(f"plugin/template: {self.section}: executing "
                                f"{self.tmpl.source!r}: {exc}") from None
        try:
            rrset = parse_rr(text)
        except ValueError as exc:
            raise TemplateError(f"plugin/template: {self.section}: {text!r} is not a "
                                f"record: {exc}") from None
        return rrset, builder_args(self.section, rrset)


class _Template:
    """One ``template`` line, prepared for matching."""

    __slots__ = ("conf", "zones", "qclass", "qtype", "regexes", "records", "rcode",
                 "ede", "fall", "dynamic", "static_args")

    def __init__(self, conf: TemplateConf) -> None:
        self.conf = conf
        self.zones = tuple((_wire_name(z), z) for z in conf.zones)
        self.qclass = conf.qclass
        self.qtype = conf.qtype
        self.regexes: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = tuple(
            (r.pattern, r.source, r.group_names) for r in conf.regexes)
        self.records = tuple(_Record(sec, rec) for sec in _SECTIONS
                             for rec in getattr(conf, sec))
        self.rcode = conf.rcode
        self.ede = None
        if conf.ederror is not None:
            code, text = conf.ederror
            raw = text.encode()
            self.ede = (code, text, b"\x00\x0f" + (2 + len(raw)).to_bytes(2, "big")
                        + code.to_bytes(2, "big") + raw)
        self.fall = None if conf.fallthrough is None else tuple(
            _wire_name(z) for z in conf.fallthrough)
        self.dynamic = any(r.rrset is None for r in self.records)
        static = [r.args for r in self.records]
        self.static_args = None if self.dynamic or any(a is None for a in static) else \
            [a for args in static for a in args]  # type: ignore[union-attr]

    def falls(self, key: bytes) -> bool:
        """CoreDNS ``fall.F.Through``."""
        return self.fall is not None and any(wire.is_under(key, z) for z in self.fall)


def _remote(address: Any) -> str:
    """CoreDNS's ``.Remote`` (``state.IP()``): the client's address, without the port
    (and without an IPv6 zone); "" when not known."""
    if not address:
        return ""
    host = str(address[0]).split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]             # a dual-stack socket's IPv4 client (Go prints it as IPv4)
    return host


class TemplateResolver:
    """The block's templates as one resolver of the worker's miss chain."""

    plugin = "template"
    wants_address = True            # .Remote: the client's address

    def __init__(self, conf: TemplatesConf | TemplateConf) -> None:
        confs = conf.templates if isinstance(conf, TemplatesConf) else (conf,)
        self.templates = tuple(_Template(c) for c in confs)
        self.zones = tuple(dict.fromkeys(wz for t in self.templates for wz, _ in t.zones))
        #: coredns_template_matches_total by (zone, class, type): kept, not exported
        self.matches: dict[tuple[str, str, str], int] = {}

    def resolve(self, q: Any, packet: bytes, reply: Callable[[bytes], None], tcp: bool,
                address: Any = None) -> bool:
        key = q.key
        if not any(wire.is_under(key, z) for z in self.zones):
            return False
        qclass, qtype = q.qclass, q.qtype
        name: str | None = None
        for t in self.templates:
            zone = _longest(key, t.zones)
            if zone is None:
                continue
            if t.qclass != _ANY and qclass != _ANY and qclass != t.qclass:
                continue
            if t.qtype != _ANY and qtype != _ANY and qtype != t.qtype:
                continue
            if name is None:
                name = q.qname.lower()
            for pattern, source, group_names in t.regexes:
                m = pattern.search(name)
                if m is not None:
                    break
            else:
                if t.falls(key):
                    continue
                reply(wire.response_with_rcode(q, _SERVFAIL))
                return True
            cls = _CLASS_NAME.get(qclass if qclass != _ANY else t.qclass, "")
            typ = _TYPE_NAME.get(qtype if qtype != _ANY else t.qtype, "")
            mk = (zone, cls, typ)
            self.matches[mk] = self.matches.get(mk, 0) + 1
            if t.rcode == _SERVFAIL:
                reply(wire.response_with_rcode(q, _SERVFAIL))
                return True
            reply(self._answer(q, packet, tcp, t, zone, name, m, source, group_names, cls, typ,
                               _remote(address)))
            return True
        return False

    def _answer(self, q: Any, packet: bytes, tcp: bool, t: _Template, zone: str, name: str,
                m: re.Match[str], source: str, group_names: tuple[str, ...], cls: str,
                typ: str, remote: str = "") -> bytes:
        limit = 65535 if tcp else (max(512, min(q.udp_size, 1232)) if q.udp_size else 512)
        edns = q.udp_size is not None
        ede = t.ede if edns else None       # no OPT in a response to a query without one
        args = t.static_args
        rendered: list[tuple[dns.rrset.RRset, list | None]] | None = None
        if args is None:
            data = None
            if t.dynamic:
                groups = tuple(g if g is not None else "" for g in m.groups(""))
                match = (m.group(0),) + groups
                group = {str(i): v for i, v in enumerate(match)}
                for i, gname in enumerate(group_names):
                    if gname and i < len(match):
                        group[gname] = match[i]
                data = TemplateData(name=name, zone=zone, regex=source, match=match,
                                    group=group, class_=cls, type_=typ, qname=q.qname,
                                    qtype=q.qtype, qclass=q.qclass, msg_id=q.id, remote=remote)
            rendered = [r.render(data) for r in t.records]
            if all(a is not None for _, a in rendered):
                args = [a for _, al in rendered for a in al]  # type: ignore[union-attr]
        if args is not None:
            b = wire.ResponseBuilder(q, rcode=t.rcode, aa=True)
            for a in args:
                b.add(*a)
            if ede is None:
                return b.to_wire(limit)
            out = bytearray(b.to_wire(limit - len(ede[2])))
            # the builder writes the OPT record last, with an empty RDATA: add the option
            assert out[-11:-8] == b"\x00\x00\x29"
            out[-2:] = len(ede[2]).to_bytes(2, "big")
            return bytes(out + ede[2])
        assert rendered is not None
        return _dnspython_answer(q, packet, t, [(r.section, rs) for r, (rs, _) in
                                                zip(t.records, rendered)], ede, limit)


def _dnspython_answer(q: Any, packet: bytes, t: _Template,
                      records: list[tuple[str, dns.rrset.RRset]],
                      ede: tuple[int, str, bytes] | None, limit: int) -> bytes:
    """The response written with dnspython (records of a class other than IN), truncated
    as the builder does: additional records go first, then authority and answer
    records from the end, with TC set when an answer or authority record went."""
    query = dns.message.from_wire(packet)
    r = dns.message.make_response(query)
    r.flags |= dns.flags.AA
    r.flags &= ~dns.flags.RA
    r.set_rcode(t.rcode)
    if query.edns >= 0:
        opts = [dns.edns.EDEOption(ede[0], ede[1] or None)] if ede is not None else []
        r.use_edns(0, dns.flags.DO if q.do else 0, 1232, options=opts)
    for section, rrset in records:
        target = {"answer": r.answer, "authority": r.authority, "additional": r.additional}[section]
        for have in target:
            if have.match(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers):
                have.update(rrset)
                break
        else:
            target.append(rrset.copy())
    while True:
        try:
            return r.to_wire(max_size=limit)
        except dns.exception.TooBig:
            pass
        for sec in (r.additional, r.authority, r.answer):
            if sec:
                last = sec[-1]
                if len(last) > 1:
                    last.discard(last[-1])
                else:
                    sec.pop()
                if sec is not r.additional:
                    r.flags |= dns.flags.TC
                break
        else:
            return wire.response_with_rcode(q, _SERVFAIL)
