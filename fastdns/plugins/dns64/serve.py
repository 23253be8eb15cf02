"""The worker side of ``dns64``: CoreDNS's ``DNS64.ServeDNS`` (plugin/dns64/dns64.go).

The C engine hands this resolver every AAAA query of the block (the plugin's
``python`` stage takes qtype 28 only, with no cache lookup in front of it: CoreDNS
runs *dns64* before *cache*).  Per query, as CoreDNS:

1. not class IN, or asked over IPv4 without ``allow_ipv4`` → the next plugin;
2. the rest of the chain answers the AAAA question (``lookup``: the C stages and
   the Python plugins after this one, the answer handed back here instead of to
   the client: CoreDNS's ``nonwriter``);
3. that answer is sent as it is when it is a name error (NXDOMAIN without answer
   records) or, without ``translate_all``, has an AAAA record in its answer;
4. otherwise the whole chain answers the same question for type A (CoreDNS's
   ``upstream.Lookup``) and the response is synthesised from it
   (:func:`synthesize`): every A record of the answer section becomes an AAAA
   record of the prefix (RFC 6052), its TTL the smaller of the A record's and the
   TTL of the AAAA answer's SOA (600 without one); every other record (CNAMEs) is
   kept; the authority and additional sections are the A answer's; TC is the A
   answer's; the rcode is NOERROR and AA, RA and AD are clear (CoreDNS's
   ``SetReply``).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rrset

from fastdns import wire
from fastdns.plugins.dns64.conf import Dns64Conf

__all__ = ["Dns64Resolver", "handler", "to6", "should_intercept", "should_translate",
           "synthesize", "with_qtype", "without_nsid"]

log = logging.getLogger("fastdns.plugin.dns64")

A, AAAA, SOA, RRSIG, IN = 1, 28, 6, 46, 1
DEFAULT_SOA_TTL = 600           # CoreDNS: "Default NS record TTL" when the answer has no SOA
_TC = 0x0200
_YEAR68 = 1 << 31               # miekg/dns RRSIG.ValidityPeriod's serial arithmetic


def to6(prefix: ipaddress.IPv6Network, v4: bytes) -> bytes:
    """The IPv6 address (16 bytes) embedding the IPv4 address ``v4`` (4 bytes) in
    ``prefix`` as RFC 6052 section 2.2 lays it out: after the prefix, skipping
    bits 64 to 71 (the u octet), the rest zero (CoreDNS's ``to6``)."""
    n = prefix.prefixlen // 8
    out = bytearray(16)
    out[:n] = prefix.network_address.packed[:n]
    j = 0
    i = n
    while i < 8 and j < 4:
        out[i] = v4[j]
        i += 1
        j += 1
    if i == 8:
        i += 1
    while j < 4:
        out[i] = v4[j]
        i += 1
        j += 1
    return bytes(out)


def is_ipv6_client(address: Any) -> bool:
    """Did the query come over IPv6 (CoreDNS's ``Family() == 2``)?  An IPv4-mapped
    address (``::ffff:192.0.2.1`` on a dual-stack socket) is IPv4, as Go's ``To4``
    makes it; an unknown address is not IPv6."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return False
    return ip.version == 6 and ip.ipv4_mapped is None


def should_intercept(q: wire.Query, address: Any, allow_ipv4: bool) -> bool:
    """CoreDNS's ``requestShouldIntercept``: an AAAA question of class IN, from an
    IPv6 client unless ``allow_ipv4``."""
    if not allow_ipv4 and not is_ipv6_client(address):
        return False
    return q.qtype == AAAA and q.qclass == IN


def _expired(msg: dns.message.Message, now: float) -> bool:
    """Does an RRSIG of ``msg`` lie outside its validity period (miekg/dns's
    ``ValidityPeriod``, with its 68-year serial arithmetic)?"""
    utc = int(now)
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            if rrset.rdtype != RRSIG:
                continue
            for rd in rrset:
                modi = int((rd.inception - utc) / _YEAR68)
                mode = int((rd.expiration - utc) / _YEAR68)
                ti = rd.inception + modi * _YEAR68
                te = rd.expiration + mode * _YEAR68
                if not ti <= utc <= te:
                    return True
    return False


def _name_error(msg: dns.message.Message, now: float) -> bool:
    """Is ``msg`` a name error as CoreDNS's ``response.Typify`` classifies it (an
    NXDOMAIN without answer records, and, when the answer has the DO bit, no
    expired signature)?"""
    if msg.opcode() in (4, 5):          # NOTIFY, UPDATE: Meta / Update
        return False
    if msg.ednsflags & dns.flags.DO and _expired(msg, now):
        return False                    # OtherError
    return msg.rcode() == dns.rcode.NXDOMAIN and not msg.answer


def should_translate(msg: dns.message.Message, translate_all: bool,
                     now: float | None = None) -> bool:
    """CoreDNS's ``responseShouldDNS64``: not for a name error (RFC 6147 5.1.2; every
    other error counts as an empty answer); with ``translate_all`` always; else
    only when the answer section has no AAAA record (5.1.1)."""
    if _name_error(msg, time.time() if now is None else now):
        return False
    if translate_all:
        return True
    return not any(rrset.rdtype == AAAA for rrset in msg.answer)


def synthesize(prefix: ipaddress.IPv6Network, question: dns.message.Message,
               orig: dns.message.Message, resp: dns.message.Message) -> dns.message.Message:
    """CoreDNS's ``Synthesize``: the response to ``question`` (the client's AAAA
    query) from ``orig`` (the chain's AAAA answer) and ``resp`` (its A answer).
    The messages are read one record per RRset, so each record keeps its own TTL."""
    out = dns.message.Message(id=question.id)
    out.flags = dns.flags.QR | (question.flags & (dns.flags.RD | dns.flags.CD))
    out.set_opcode(question.opcode())
    if resp.flags & dns.flags.TC:
        out.flags |= dns.flags.TC
    out.question = list(question.question)
    soa_ttl = DEFAULT_SOA_TTL
    for rrset in orig.authority:
        if rrset.rdtype == SOA:
            soa_ttl = rrset.ttl                 # the last SOA's, as CoreDNS's loop leaves it
    for rrset in resp.answer:
        if rrset.rdtype != A:
            out.answer.append(rrset)            # 5.3.3: every other record unchanged
            continue
        for rd in rrset:
            v6 = to6(prefix, ipaddress.IPv4Address(rd.address).packed)
            aaaa = dns.rrset.RRset(rrset.name, rrset.rdclass, AAAA)
            aaaa.add(dns.rdata.from_wire(rrset.rdclass, AAAA, v6, 0, 16),
                     min(rrset.ttl, soa_ttl))
            out.answer.append(aaaa)
    out.authority = list(resp.authority)        # 5.3.2: the rest as the A answer has it
    out.additional = list(resp.additional)
    return out


def with_qtype(packet: bytes, qtype: int) -> bytes:
    """The query ``packet`` asking for ``qtype`` instead (ID, flags, name as written,
    class and EDNS unchanged: CoreDNS's ``NewWithQuestion`` on a copy)."""
    pos = 12
    while pos < len(packet):
        n = packet[pos]
        if n & 0xC0:
            pos += 2
            break
        pos += 1 + n
        if n == 0:
            break
    if pos + 4 > len(packet):
        raise wire.FormatError("question runs past the message")
    return packet[:pos] + qtype.to_bytes(2, "big") + packet[pos + 2:]


def without_nsid(packet: bytes) -> bytes:
    """The query ``packet`` without its EDNS NSID option (everything else kept)."""
    m = dns.message.from_wire(packet)
    m.use_edns(m.edns, m.ednsflags, m.payload,
               options=[o for o in m.options if o.otype != dns.edns.NSID])
    return m.to_wire()


def _read(data: bytes) -> dns.message.Message:
    return dns.message.from_wire(data, one_rr_per_rrset=True, ignore_trailing=True)


Lookup = Callable[..., None]


class Dns64Resolver:
    """The block's ``dns64``: see the module doc."""

    plugin = "dns64"
    wants_address = True        # allow_ipv4: the client's family
    wants_lookup = True         # the rest of the chain, answered back to it

    def __init__(self, conf: Dns64Conf) -> None:
        self.conf = conf
        self.prefix = ipaddress.IPv6Network(conf.prefix)
        self.translate_all = conf.translate_all
        self.allow_ipv4 = conf.allow_ipv4

    def resolve(self, q: wire.Query, packet: bytes, reply: Callable[[bytes], None], tcp: bool,
                address: Any = None, lookup: Lookup | None = None) -> bool:
        if lookup is None or not should_intercept(q, address, self.allow_ipv4):
            return False
        limit = _client_limit(q, tcp)
        # the block's nsid goes on this plugin's answer once, not on the chain's answers
        # too (CoreDNS's nsid rewrites the option the inner answer carries)
        inner = without_nsid(packet) if q.nsid else packet
        a_packet = with_qtype(inner, A)

        # The callbacks may run later, from the forwarder's answer: each one answers
        # the client exactly once and never lets an exception out.
        def on_aaaa(data: bytes) -> None:
            if not data:
                return                  # dropped after us (acl): CoreDNS writes nothing either
            try:
                orig = _read(data)
                translate = should_translate(orig, self.translate_all)
            except Exception:           # not a message dnspython reads: passed on as it is
                reply(data)
                return
            if not translate:
                reply(data)
                return
            try:
                lookup(a_packet, lambda adata: on_a(orig, adata), start=0)
            except Exception as exc:
                self._failed(q, reply, exc)

        def on_a(orig: dns.message.Message, adata: bytes) -> None:
            if not adata:
                # the chain dropped the A question: CoreDNS's Synthesize fails on the
                # missing message and the server's recovery answers SERVFAIL
                reply(wire.response_with_rcode(q, wire.SERVFAIL))
                return
            try:
                out = synthesize(self.prefix, _read(packet), orig, _read(adata))
                body = wire.body_from_response(out.to_wire(max_size=65535))
                data = wire.response_from_body(q, body, 0, limit)
            except Exception as exc:
                self._failed(q, reply, exc)
                return
            if out.flags & dns.flags.TC and not data[2] & (_TC >> 8):
                data = data[:2] + bytes([data[2] | (_TC >> 8)]) + data[3:]
            reply(data)

        lookup(inner, on_aaaa)
        return True

    @staticmethod
    def _failed(q: wire.Query, reply: Callable[[bytes], None], exc: Exception) -> None:
        log.warning("plugin/dns64: cannot synthesise the answer to %s: %r", q.qname, exc)
        reply(wire.response_with_rcode(q, wire.SERVFAIL))


def _client_limit(q: wire.Query, tcp: bool) -> int:
    from fastdns.worker.forwarder import client_limit
    return client_limit(q, tcp)


def handler(server: Any, conf: Dns64Conf) -> Dns64Resolver:
    """The plugin's ``handler`` entry: one resolver per block."""
    return Dns64Resolver(conf)
