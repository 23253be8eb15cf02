"""Malformed-query corpus shared by tests/test_wire_malformed.py and the valgrind run.

Every entry is ``(label, packet)``; each must make ``parse_query`` raise
FormatError (or parse, for the documented refusals in ``REFUSALS``).
"""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import dns.name


def header(qd=1, an=0, ns=0, ar=0, flags=0x0100, qid=0x1234) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(name=b"\x03www\x07example\x00", qtype=1, qclass=1) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


def opt(udp=1232, ttl=0, rdata=b"", owner=b"\x00") -> bytes:
    return owner + struct.pack("!HHIH", 41, udp, ttl, len(rdata)) + rdata


def valid_queries() -> list[bytes]:
    qs = [
        dns.message.make_query("www.example.", "A").to_wire(),
        dns.message.make_query("NgInX-Svc.Default.svc.cluster.local.", "AAAA", use_edns=0,
                               payload=4096, want_dnssec=True).to_wire(),
        dns.message.make_query("_http._tcp.svc.ns.svc.cluster.local.", "SRV", use_edns=0,
                               options=[dns.edns.GenericOption(10, b"\x01" * 8)]).to_wire(),
        header() + question(b"\x00", 2),
    ]
    return qs


def corpus() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for i, q in enumerate(valid_queries()):
        for cut in range(len(q)):
            out.append((f"q{i}-truncated-at-{cut}", q[:cut]))
    long_label = b"\x40" + b"a" * 64 + b"\x00"
    out += [
        ("empty", b""),
        ("qdcount-0", header(qd=0)),
        ("qdcount-2", header(qd=2) + question() + question()),
        ("qr-set", header(flags=0x8100) + question()),
        ("label-64", header() + question(long_label)),
        ("label-type-0x40", header() + question(b"\x41" + b"a" * 1 + b"\x00")),
        ("label-type-0x80", header() + question(b"\x81a\x00")),
        ("name-256", header() + question(b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63
                                         + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x00")),
        ("pointer-to-self", header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1)),
        ("pointer-forward", header() + b"\xc0\x20" + struct.pack("!HH", 1, 1) + b"\x00" * 20),
        ("pointer-loop", header(an=1) + question() + b"\xc0\x1d\xc0\x1b" + b"\x00" * 10),
        ("pointer-into-header-loop", header() + b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1)),
        ("pointer-truncated", header() + b"\x01a\xc0"),
        ("two-opt", header(ar=2) + question() + opt() + opt()),
        ("opt-non-root-owner", header(ar=1) + question() + opt(owner=b"\x01a\x00")),
        ("opt-option-past-rdata", header(ar=1) + question() + opt(rdata=b"\x00\x0a\x00\x08abc")),
        ("opt-option-header-cut", header(ar=1) + question() + opt(rdata=b"\x00\x0a\x00")),
        ("opt-rdlen-past-end", header(ar=1) + question() + opt()[:-2] + b"\x00\x10"),
        ("ar-count-without-record", header(ar=1) + question()),
        ("an-count-without-record", header(an=3) + question()),
        ("trailing-junk", header() + question() + b"\x00\x00junk"),
        ("random-rr-bad-name", header(ar=1) + question() + b"\x3fxx"),
    ]
    # a name made of 128 pointers, each to the previous label: deep but legal
    # chains are bounded; here each pointer points forward of the previous one
    chain = bytearray(header() + b"\x01a\x00")
    for k in range(200):
        chain += struct.pack("!H", 0xC000 | (len(chain) - 2))
    out.append(("pointer-chain-forwardish", bytes(chain) + struct.pack("!HH", 1, 1)))
    return out


# Documented refusals: these parse (the server answers NOTIMP / BADVERS).
REFUSALS = [
    ("opcode-notify", header(flags=0x2000) + question()),
    ("edns-version-1", header(ar=1) + question() + opt(ttl=0x00010000)),
]
