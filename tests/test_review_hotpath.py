"""Adversarial review of the C hot path: bodies, truncation limits, AAAA shuffle.

Each test pins a bug found by reading _wire.pyx / _loop.pyx / opsstats.pxd;
dnspython is the oracle for every response that is produced.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from fastdns import wire
from fastdns._loop import Engine

def _a_response(qname: str, n: int, edns: bool) -> tuple[bytes, bytes]:
    q = dns.message.make_query(qname, "A", use_edns=0 if edns else None)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(qname, 300, "IN", "A",
                                        *[f"10.0.{i // 250}.{i % 250}" for i in range(n)]))
    return q.to_wire(), r.to_wire()


def test_body_with_ttl_offset_outside_its_rr_is_refused() -> None:
    """A stored body whose RRMeta.ttl_off points past the copied RRs must not make
    emit_body write there (cache values live in shared memory: never trusted).
    Run in a child: before the fix this wrote past the output buffer (SIGSEGV)."""
    code = textwrap.dedent('''
        import struct, sys
        import dns.message, dns.rrset
        from fastdns import wire
        q = dns.message.make_query("a.example.", "A")
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text("a.example.", 300, "IN", "A", "10.0.0.1"))
        good = wire.body_from_response(r.to_wire())
        body = bytearray(good)
        hsize = struct.calcsize("=8HI")
        assert struct.unpack_from("=8HI", body)[5] == 1            # nrr
        end, ttl_off = struct.unpack_from("=HH", body, hsize)
        struct.pack_into("=HH", body, hsize, end, 0xFFFE)         # corrupt: far outside
        pq = wire.parse_query(q.to_wire())
        try:
            wire.response_from_body(pq, bytes(body), age=5)
        except wire.EncodeError:
            pass
        else:
            sys.exit("corrupt body was emitted")
        ok = dns.message.from_wire(wire.response_from_body(pq, good, age=5))
        assert ok.answer[0].ttl == 295, ok.answer[0].ttl
        print("OK")
    ''')
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0 and res.stdout.strip() == "OK", (res.returncode, res.stderr[-2000:])


def test_limit_smaller_than_question_plus_opt_never_exceeds_limit() -> None:
    """room = limit - question - 11 used to wrap around (size_t) when the limit did
    not even hold the question and the OPT: the whole body was copied past the limit."""
    label = "x" * 63
    qname = ".".join([label] * 3) + "." + "y" * 61 + "."          # 255-byte wire name
    assert len(wire.name_from_text(qname)) == 255
    qwire, rwire = _a_response(qname, 20, edns=True)
    body = wire.body_from_response(rwire)
    q = wire.parse_query(qwire)
    qend = 12 + 255 + 4
    for max_size in range(qend, qend + 11):
        try:
            out = wire.response_from_body(q, body, max_size=max_size)
        except wire.EncodeError:
            continue
        assert len(out) <= max_size, (max_size, len(out))


def test_body_from_oversized_message_is_refused() -> None:
    """A 'response' longer than 65535 bytes cannot be a DNS message; its offsets
    would wrap in the body's uint16 fields."""
    q = dns.message.make_query("big.example.", "TXT")
    head = bytearray(dns.message.make_response(q).to_wire())
    struct.pack_into("!H", head, 6, 300)                       # ANCOUNT
    txt = bytes([255]) + b"z" * 255
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(txt)) + txt
    data = bytes(head) + rr * 300
    assert len(data) > 65535
    with pytest.raises(wire.FormatError):
        wire.body_from_response(data)


def test_shuffle_of_aaaa_records_keeps_every_record() -> None:
    """AAAA shuffle swaps TTL+RDLENGTH+RDATA = 22 bytes (the swap buffer was 20)."""
    q = dns.message.make_query("v6.example.org.", "AAAA")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("v6.example.org.", 30, "IN", "AAAA",
                                        *[f"fd00::{i:x}:ffff:ffff" for i in range(1, 41)]))
    data = r.to_wire()
    e = Engine()
    seen = set()
    for _ in range(50):
        out = dns.message.from_wire(e.shuffle_answer(data))
        assert sorted(map(str, out.answer[0])) == sorted(map(str, r.answer[0]))
        assert out.answer[0].ttl == 30
        seen.add(tuple(map(str, out.answer[0])))
    assert len(seen) > 10
