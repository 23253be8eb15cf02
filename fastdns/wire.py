"""The DNS wire codec for embedders: parse queries, build responses.

The C-level functions in ``fastdns._wire`` are what the worker loop runs;
this module is their documented Python surface.

>>> import dns.message
>>> from fastdns import wire
>>> q = wire.parse_query(dns.message.make_query("Web.Example.", "A").to_wire())
>>> q.qname, q.qtype
('Web.Example.', 1)
>>> r = wire.ResponseBuilder(q).add("answer", None, wire.A, 30, "10.0.0.1")
>>> dns.message.from_wire(r.to_wire()).answer[0].to_text()
'Web.Example. 30 IN A 10.0.0.1'
"""

from __future__ import annotations

from fastdns._wire import (
    Query,
    ResponseBuilder,
    body_from_response,
    error_response,
    name_from_text,
    name_to_text,
    parse as _parse,
    response_from_body,
    pack_names,
    response_with_rcode,
    unpack_names,
)
from fastdns.errors import EncodeError, FormatError
from fastdns.records import (
    AAAA,
    CNAME,
    FORMERR,
    NOERROR,
    NOTIMP,
    NS,
    NXDOMAIN,
    OPT,
    PTR,
    REFUSED,
    SERVFAIL,
    SOA,
    SRV,
    TXT,
    A,
    Answer,
)

__all__ = [
    "A", "AAAA", "CNAME", "NS", "PTR", "SOA", "SRV", "TXT", "OPT",
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
    "Query", "ResponseBuilder", "FormatError", "EncodeError",
    "parse_query", "make_response", "encode_answer", "name_from_text", "name_to_text",
    "pack_names", "unpack_names", "is_under",
    "body_from_response", "response_from_body", "response_with_rcode", "error_response",
]


def is_under(key: bytes, zone: bytes) -> bool:
    """Is the lower-cased wire name ``key`` equal to or below the wire name ``zone``
    (on a label boundary: ``b"\\x02ab\\x00"`` is not below ``b"\\x01b\\x00"``)?"""
    if not key.endswith(zone):
        return False
    at = len(key) - len(zone)
    pos = 0
    while pos < at:
        pos += 1 + key[pos]
    return pos == at


def parse_query(data: bytes) -> Query:
    """Parse a DNS query.

    Returns a :class:`Query` with ``id, opcode, rd, qname`` (text, exactly as
    received), ``qtype, qclass``, ``udp_size`` (None without EDNS) and
    ``do``.  Raises :class:`FormatError` (a ``ValueError``) for any malformed
    input and for messages that are responses; never another exception.
    """
    return _parse(data)


def make_response(query: Query, answer: Answer, *, ra: bool = False,
                  max_size: int | None = None, compress: bool = True) -> bytes:
    """Encode ``answer`` (a :class:`fastdns.records.Answer`) as the response to ``query``."""
    b = ResponseBuilder(query, rcode=answer.rcode, aa=answer.aa, ra=ra)
    for section, rrs in (("answer", answer.answer), ("authority", answer.authority),
                         ("additional", answer.additional)):
        for rr in rrs:
            b.add(section, rr.name, rr.rtype, rr.ttl, rr.rdata)
    return b.to_wire(max_size, compress)


def encode_answer(qname: str | bytes | None, qtype: int, answer: Answer) -> bytes:
    """Encode ``answer`` once into a stored body for the name ``qname``.

    The body is what the answer table and the shared cache hold; the hot path
    writes it behind any query for the same name (any case) and type.  With
    ``qname=None`` the body is written without compression and fits behind
    any question (a zone's NXDOMAIN / NODATA).
    """
    name = b"\x00" if qname is None else (qname if isinstance(qname, bytes) else name_from_text(qname))
    q = _parse(b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name
               + (qtype & 0xFFFF).to_bytes(2, "big") + b"\x00\x01")
    return body_from_response(make_response(q, answer, max_size=65535, compress=qname is not None),
                              any_qname=qname is None)
