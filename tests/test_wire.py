"""The codec against dnspython, both ways, with random names and records."""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.rdtypes.ANY.TXT
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdns import wire
from fastdns.records import Answer, Record

label_bytes = st.one_of(
    st.binary(min_size=1, max_size=63),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
            min_size=1, max_size=63).map(str.encode),
)


@st.composite
def names(draw, max_wire=255) -> dns.name.Name:
    labels = draw(st.lists(label_bytes, min_size=0, max_size=8))
    if draw(st.booleans()):  # sometimes aim at the maximum length
        labels = [b"x" * 63] * 3 + [draw(st.binary(min_size=1, max_size=61))]
    while sum(len(x) + 1 for x in labels) + 1 > max_wire:
        labels.pop()
    return dns.name.Name(labels + [b""])


QTYPES = [1, 2, 5, 6, 12, 16, 28, 33, 255, 65, 64]


@settings(max_examples=400, deadline=None)
@given(names(), st.sampled_from(QTYPES), st.booleans(), st.integers(0, 65535),
       st.booleans(), st.booleans(), st.integers(0, 0xFFFF))
def test_parse_what_dnspython_writes(name, qtype, edns, payload, do, rd, qid) -> None:
    if edns:
        m = dns.message.make_query(name, qtype, use_edns=0, payload=payload, want_dnssec=do)
    else:
        m = dns.message.make_query(name, qtype, use_edns=False)
    m.id = qid
    if not rd:
        m.flags &= ~dns.flags.RD
    q = wire.parse_query(m.to_wire())
    assert q.id == qid and q.opcode == 0 and q.rd == rd
    assert q.qname == name.to_text()                       # as received, case kept
    assert q.key == name.canonicalize().to_wire()            # the lower-cased key
    assert (q.qtype, q.qclass) == (qtype, 1)
    assert q.udp_size == (max(512, payload) if edns else None)
    assert q.do == (do and edns)


def test_escapes_in_text_form() -> None:
    n = dns.name.Name([b"a.b", b"c\\d", b"\x00\xff", b'"@$();', b""])
    q = wire.parse_query(dns.message.make_query(n, "A").to_wire())
    assert q.qname == n.to_text() == '\\097\\.b.c\\\\d.\\000\\255.\\"\\@\\$\\(\\)\\;.'.replace("\\097", "a")
    assert wire.name_from_text(q.qname) == n.to_wire()


@settings(max_examples=300, deadline=None)
@given(names())
def test_name_text_round_trip(name) -> None:
    assert wire.name_from_text(name.to_text()) == name.to_wire()
    assert wire.name_to_text(name.to_wire()) == name.to_text()


ipv4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
short_names = names(max_wire=80).map(lambda n: n.to_text())
u16 = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def records(draw, owner: str) -> tuple[int, object]:
    rtype = draw(st.sampled_from([1, 28, 5, 2, 12, 33, 6, 16]))
    if rtype == 1:
        return rtype, draw(ipv4)
    if rtype == 28:
        return rtype, draw(ipv6)
    if rtype in (5, 2, 12):
        return rtype, draw(short_names)
    if rtype == 33:
        return rtype, (draw(u16), draw(u16), draw(u16), draw(short_names))
    if rtype == 6:
        return rtype, (draw(short_names), draw(short_names), draw(u32), draw(u32),
                       draw(u32), draw(u32), draw(u32))
    return rtype, tuple(draw(st.lists(st.text(alphabet="abc xyz\"\\;", max_size=40), min_size=1,
                                      max_size=3)))


def dnspython_rdata(rtype: int, rdata) -> dns.rdata.Rdata:
    if rtype in (1, 28):
        text = rdata
    elif rtype in (5, 2, 12):
        text = rdata
    elif rtype == 33:
        text = "%d %d %d %s" % rdata
    elif rtype == 6:
        text = "%s %s %d %d %d %d %d" % rdata
    else:
        return dns.rdtypes.ANY.TXT.TXT(1, 16, [s.encode() for s in rdata])
    return dns.rdata.from_text(1, rtype, text)


@settings(max_examples=300, deadline=None)
@given(names(max_wire=100), st.data(), st.booleans(), st.booleans(), st.integers(0, 0x7FFFFFFF))
def test_dnspython_parses_what_we_write(qname, data, edns, do, ttl) -> None:
    query = dns.message.make_query(qname, "A", use_edns=0 if edns else False,
                                   want_dnssec=do and edns)
    q = wire.parse_query(query.to_wire())
    owners = [qname.to_text(), data.draw(short_names)]
    expected = []
    b = wire.ResponseBuilder(q, rcode=0, aa=True)
    for section in ("answer", "authority", "additional"):
        for _ in range(data.draw(st.integers(0, 3))):
            owner = data.draw(st.sampled_from(owners))
            rtype, rdata = data.draw(records(owner))
            if rtype in (5, 6) and any(e[:3] == (section, dns.name.from_text(owner), rtype)
                                       for e in expected):
                continue          # singleton types: dnspython keeps one per RRset
            b.add(section, owner, rtype, ttl, rdata)
            expected.append((section, dns.name.from_text(owner), rtype,
                             dnspython_rdata(rtype, rdata)))
    out = b.to_wire(max_size=65535)
    m = dns.message.from_wire(out)
    assert m.id == query.id and m.flags & dns.flags.QR and m.flags & dns.flags.AA
    assert m.question[0].name.to_text() == qname.to_text()
    got = set()
    for section in ("answer", "authority", "additional"):
        for rrset in getattr(m, section):
            assert rrset.ttl == ttl
            for rd in rrset:
                got.add((section, rrset.name, rrset.rdtype, rd))
    assert got == {(s, n, t, rd) for s, n, t, rd in expected}
    assert (m.edns >= 0) == edns
    if edns:
        assert m.payload == 1232 and bool(m.ednsflags & dns.flags.DO) == (do and edns)


def test_compression_is_used() -> None:
    q = wire.parse_query(dns.message.make_query("a.very.long.domain.example.", "A").to_wire())
    b = wire.ResponseBuilder(q)
    for i in range(10):
        b.add("answer", None, wire.A, 5, f"10.0.0.{i}")
    out = b.to_wire()
    assert len(out) == 12 + len(q.qname_wire) + 4 + 10 * (2 + 10 + 4)


@settings(max_examples=200, deadline=None)
@given(names(max_wire=60), st.integers(1, 60), st.integers(512, 1500), st.booleans())
def test_truncation_whole_rrs_and_tc(qname, n, limit, edns) -> None:
    query = (dns.message.make_query(qname, "AAAA", use_edns=0, payload=limit) if edns
             else dns.message.make_query(qname, "AAAA", use_edns=False))
    q = wire.parse_query(query.to_wire())
    b = wire.ResponseBuilder(q)
    for i in range(n):
        b.add("answer", None, wire.AAAA, 5, f"fd00::{i:x}")
    b.add("additional", "glue.example.", wire.A, 5, "10.1.1.1")
    out = b.to_wire()
    assert len(out) <= (limit if edns else 512)
    m = dns.message.from_wire(out)           # dnspython: well-formed, no half RR
    got = sum(len(r) for r in m.answer)
    full = len(b.to_wire(max_size=65535))
    if full <= (limit if edns else 512):
        assert got == n and not m.flags & dns.flags.TC
    else:
        assert got <= n
        assert bool(m.flags & dns.flags.TC) == (got < n)


@settings(max_examples=200, deadline=None)
@given(names(max_wire=100), st.data())
def test_body_round_trip_keeps_message(qname, data) -> None:
    """dnspython writes a response; stored as a body and emitted again it is the same."""
    query = dns.message.make_query(qname, "A", use_edns=0)
    resp = dns.message.make_response(query)
    for _ in range(data.draw(st.integers(0, 5))):
        rtype, rdata = data.draw(records(qname.to_text()))
        rrset = resp.find_rrset(resp.answer, qname, 1, rtype, create=True)
        rrset.add(dnspython_rdata(rtype, rdata), 300)
    wire_resp = resp.to_wire()
    body = wire.body_from_response(wire_resp)
    # the same question from a client spelling the name in another case
    q2 = dns.message.make_query(dns.name.Name([lb.swapcase() for lb in qname.labels]), "A",
                                use_edns=0)
    q = wire.parse_query(q2.to_wire())
    out = dns.message.from_wire(wire.response_from_body(q, body, age=100, max_size=65535))
    assert out.id == q2.id and out.question[0].name.to_text() == q.qname
    # names compare case-insensitively (pointers into the question carry the client's case)
    assert {(r.name, r.rdtype, frozenset(r)) for r in out.answer} == \
        {(r.name, r.rdtype, frozenset(r)) for r in resp.answer}
    for r in out.answer:
        assert r.ttl == 200


def test_make_response_from_answer_model() -> None:
    q = wire.parse_query(dns.message.make_query("Missing.cluster.local.", "A").to_wire())
    soa = Record("cluster.local.", wire.SOA, 5, ("ns.dns.cluster.local.",
                 "hostmaster.cluster.local.", 1, 7200, 1800, 86400, 5))
    m = dns.message.from_wire(wire.make_response(q, Answer(wire.NXDOMAIN, (), (soa,))))
    assert m.rcode() == 3 and m.authority[0].rdtype == 6 and not m.answer


def test_bad_rdata_is_encode_error() -> None:
    q = wire.parse_query(dns.message.make_query("a.", "A").to_wire())
    b = wire.ResponseBuilder(q)
    for rtype, rdata in ((1, "300.1.1.1"), (28, "1.2.3.4"), (33, (1, 2)), (5, "a..b"),
                         (5, "x" * 64 + "."), (99, "text")):
        try:
            b.add("answer", None, rtype, 5, rdata)
        except wire.EncodeError:
            continue
        raise AssertionError(f"{rtype} {rdata!r} accepted")



def test_compression_never_points_into_the_name_being_written() -> None:
    """A name whose labels repeat ('0.0.0.0.') must not point at its own earlier
    labels (that was a self-loop, written when uninitialised bytes happened to
    look like the end of the name)."""
    q = wire.parse_query(dns.message.make_query("x" * 63 + ".", "A", use_edns=False).to_wire())
    for _ in range(300):
        b = wire.ResponseBuilder(q)
        b.add("authority", ".", wire.PTR, 348, "\\219\\193g.r8.0.0.0.0.")
        b.add("additional", "0.0.", wire.A, 348, "0.0.0.1")
        m = dns.message.from_wire(b.to_wire(max_size=65535))
        assert m.authority[0][0].target == dns.name.from_text("\\219\\193g.r8.0.0.0.0.")
        assert m.additional[0].name == dns.name.from_text("0.0.")


_LABELS = st.sampled_from(["a", "b", "web", "_http", "_tcp", "svc", "ns-1", "x" * 63, "172-16-0-1"])


@given(st.lists(st.lists(_LABELS, max_size=3).map(lambda ls: ".".join(ls) + "."), max_size=12))
def test_pack_names_round_trips_and_shares_the_ending(texts):
    """wire.pack_names / unpack_names (the compiler's per-unit name lists)."""
    keys = [wire.name_from_text(t if t != "." else ".") for t in texts]
    blob = wire.pack_names(keys)
    assert wire.unpack_names(blob) == keys
    if keys:
        assert len(blob) <= sum(len(k) for k in keys) + len(keys) + 1


def test_pack_names_refuses_what_is_not_a_name():
    with pytest.raises(wire.FormatError):
        wire.pack_names([b"\x05ab"])
    with pytest.raises(wire.FormatError):
        wire.unpack_names(b"\x05\x00")
    assert wire.pack_names([]) == b"" and wire.unpack_names(b"") == []
