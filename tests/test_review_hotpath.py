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
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastdns import wire
from fastdns._answers import AnswerTable
from fastdns._loop import Engine
from fastdns._shmcache import SharedCache
from fastdns.plugins.kubernetes.podnames import pod_soa
from fastdns.records import A, NOERROR, NXDOMAIN, Answer, Record

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



# -- an engine with a hand-built table (pods insecure, fallthrough to Python) --

ZONE = "cluster.local."
ZONE_WIRE = wire.name_from_text(ZONE)


def _k8s_stage(fallthrough: list[bytes] | None) -> dict:
    """The engine stage the kubernetes plugin declares (fastdns.plugins.kubernetes)."""
    return {"kind": "table", "tid": 0, "zones": [ZONE_WIRE], "pods": "insecure", "ttl": 30,
            "fallthrough": fallthrough, "refuse_xfr": True, "soa_nodata": True}


def _engine(fallthrough: list[bytes] | None) -> tuple[Engine, AnswerTable]:
    """One listener, one block owning cluster.local with ``pods insecure``;
    Python plugins behind it (misses come back as None)."""
    soa = pod_soa(ZONE, 30)
    e = Engine()
    e.configure({"listeners": [{"zones": [[b"\x00", 0]]}],
                 "blocks": [{"stages": [_k8s_stage(fallthrough), {"kind": "python"}]}]})
    table = AnswerTable(16)
    a = Answer(NOERROR, tuple(Record("web.default.svc.cluster.local.", A, 30, f"10.0.{i // 200}.{i % 200}")
                              for i in range(300)))
    table.set(wire.name_from_text("web.default.svc.cluster.local."),
              [(A, wire.encode_answer("web.default.svc.cluster.local.", A, a)),
               (0, wire.encode_answer("web.default.svc.cluster.local.", 0, Answer(NOERROR, (), (soa,))))])
    table.set(wire.name_from_text("default.pod.cluster.local."),
              [(0, wire.encode_answer("default.pod.cluster.local.", 0, Answer(NOERROR, (), (soa,))))])
    e.set_table(0, table)
    e.set_zone(0, 0, wire.encode_answer(None, 0, Answer(NXDOMAIN, (), (soa,))),
               wire.encode_answer(None, 0, Answer(NOERROR, (), (soa,))))
    e.set_synced(0, True)
    return e, table


def _ask(e: Engine, name: str, rtype: str = "A") -> bytes | None:
    return e.answer_packet(0, dns.message.make_query(name, rtype).to_wire())


def test_deep_names_fall_through_like_shallow_ones() -> None:
    """pod_insecure kept the first 8 label starts and answered NXDOMAIN for any
    deeper name before checking it ends in ``pod``: a 9-label name under a
    fallthrough zone was NXDOMAIN instead of going to the next plugin."""
    e, _t = _engine(fallthrough=[])
    assert _ask(e, "a.b.c.cluster.local.") is None                   # falls through
    assert _ask(e, "a.b.c.d.e.f.g.h.cluster.local.") is None          # 8 labels
    assert _ask(e, "a.b.c.d.e.f.g.h.i.cluster.local.") is None        # 9 labels
    assert _ask(e, "a.b.c.d.e.f.g.h.i.j.k.l.cluster.local.") is None
    # pod names themselves are still answered in C
    r = dns.message.from_wire(_ask(e, "10-1-2-3.default.pod.cluster.local."))
    assert r.rcode() == 0 and str(r.answer[0][0]) == "10.1.2.3"
    r = dns.message.from_wire(_ask(e, "x.y.z.10-1-2-3.default.pod.cluster.local."))
    assert r.rcode() == 3                                              # > 5 labels: NXDOMAIN


def test_deep_pod_names_without_fallthrough_are_nxdomain() -> None:
    e, _t = _engine(fallthrough=None)
    for name in ("a.b.c.d.e.f.g.h.i.cluster.local.", "a.b.c.d.e.f.g.h.i.pod.cluster.local.",
                 "1-2-3-4.a.b.c.d.e.f.g.default.pod.cluster.local."):
        r = dns.message.from_wire(_ask(e, name))
        assert r.rcode() == 3, name
    r = dns.message.from_wire(_ask(e, "fd00--1.default.pod.cluster.local.", "AAAA"))
    assert str(r.answer[0][0]) == "fd00::1"
    label = "1" * 63
    r = dns.message.from_wire(_ask(e, f"{label}.default.pod.cluster.local."))
    assert r.rcode() == 3                                              # not an address


# -- fuzz: random and mutated packets through Engine.answer_packet -------------

_NAMES = ["web.default.svc.cluster.local.", "WeB.DeFault.svc.cluster.local.",
          "10-1-2-3.default.pod.cluster.local.", "fd00--1.default.pod.cluster.local.",
          "nope.default.svc.cluster.local.", "a.b.c.d.e.f.g.h.i.pod.cluster.local.",
          "big.example.", "BIG.example.", "other.example.", ".",
          ".".join(["x" * 63] * 3) + "." + "y" * 47 + ".cluster.local."]


def _queries() -> list[bytes]:
    out = []
    for name in _NAMES:
        for rtype in ("A", "AAAA", "SRV", "TXT", "ANY"):
            for edns, payload in ((None, 0), (0, 512), (0, 1232), (0, 4096), (0, 100)):
                q = dns.message.make_query(name, rtype, use_edns=edns, payload=payload or 1232,
                                           want_dnssec=payload == 4096)
                out.append(q.to_wire())
    return out


_QUERIES = _queries()


@pytest.fixture(scope="module")
def fuzz_engine():
    cache = SharedCache.create(f"/fastdns-review-{os.getpid()}", capacity=1024)
    try:
        e, table = _engine(fallthrough=[b"\x07example\x00"])
        soa = pod_soa(ZONE, 30)
        e.configure({"listeners": [{"zones": [[ZONE_WIRE, 0], [b"\x00", 1]]}],
                     "blocks": [{"stages": [_k8s_stage(None)], "loadbalance": True},
                                {"stages": [{"kind": "cache"}], "cache": True,
                                 "loadbalance": True}]})
        e.set_table(0, table)
        e.set_zone(0, 0, wire.encode_answer(None, 0, Answer(NXDOMAIN, (), (soa,))),
                   wire.encode_answer(None, 0, Answer(NOERROR, (), (soa,))))
        e.set_synced(0, True)
        big = Answer(NOERROR, tuple(Record("big.example.", A, 300, f"10.9.{i // 200}.{i % 200}")
                                    for i in range(150)))
        assert cache.put(wire.name_from_text("big.example."), A, 1, False,
                         wire.encode_answer("big.example.", A, big), 300)
        e.attach_cache(cache)
        yield e
    finally:
        cache.close()
        cache.unlink()


def _check(e: Engine, packet: bytes, tcp: bool) -> None:
    out = e.answer_packet(0, packet, tcp)
    if not out:
        return
    try:
        q = dns.message.from_wire(packet)
        limit = 65535 if tcp else (min(max(q.payload, 512), 1232) if q.edns >= 0 else 512)
    except Exception:
        limit = 65535 if tcp else 512
    assert len(out) <= limit, (len(out), limit)
    if (out[2] >> 3) & 0xF == 5:             # UPDATE (NOTIMP): dnspython wants an SOA zone
        assert out[3] & 0xF in (1, 4) and len(out) >= 12   # FORMERR if its question is broken too
        return
    r = dns.message.from_wire(out)           # every response parses (dnspython: no forward pointers)
    assert r.id == int.from_bytes(packet[:2], "big")
    assert r.flags & dns.flags.QR


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_QUERIES), st.data(), st.booleans())
def test_fuzz_mutated_queries(fuzz_engine, packet: bytes, data, tcp: bool) -> None:
    b = bytearray(packet)
    for _ in range(data.draw(st.integers(0, 6))):
        op = data.draw(st.integers(0, 3))
        i = data.draw(st.integers(0, len(b) - 1))
        if op == 0:
            b[i] = data.draw(st.integers(0, 255))
        elif op == 1:
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == 2:
            del b[i:i + data.draw(st.integers(1, 8))]
        else:
            b[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        if not b:
            b = bytearray(packet[:1])
    _check(fuzz_engine, bytes(b), tcp)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=700), st.booleans())
def test_fuzz_random_bytes(fuzz_engine, data: bytes, tcp: bool) -> None:
    _check(fuzz_engine, data, tcp)


def test_fuzz_engine_answers_the_interesting_names(fuzz_engine) -> None:
    """The fuzz engine really reaches table, pods, truncation and the cache."""
    e = fuzz_engine
    r = dns.message.from_wire(_ask(e, "web.default.svc.cluster.local."))
    assert r.flags & dns.flags.TC and 0 < len(r.answer[0]) < 300
    r = dns.message.from_wire(_ask(e, "10-1-2-3.default.pod.cluster.local."))
    assert str(r.answer[0][0]) == "10.1.2.3"
    r = dns.message.from_wire(_ask(e, "Big.Example."))
    assert r.flags & dns.flags.TC and r.answer
    r = dns.message.from_wire(e.answer_packet(0, dns.message.make_query("big.example.", "A").to_wire(), True))
    assert len(r.answer[0]) == 150 and not r.flags & dns.flags.TC


def test_set_table_none_detaches() -> None:
    """The docstring promises None detaches; it used to take &None.core (garbage
    pointer, then a crash on the next query).  In a child for that reason."""
    code = textwrap.dedent('''
        import dns.message
        from fastdns import wire
        from tests.test_review_hotpath import _engine
        e, table = _engine(fallthrough=None)
        e.set_table(0, None)
        out = e.answer_packet(0, dns.message.make_query("web.default.svc.cluster.local.", "A").to_wire())
        assert dns.message.from_wire(out).rcode() == 3, out   # no table: every name is absent
        e.set_table(0, table)
        r = dns.message.from_wire(e.answer_packet(0, dns.message.make_query(
            "web.default.svc.cluster.local.", "A").to_wire()))
        assert r.answer, r
        print("OK")
    ''')
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0 and res.stdout.strip() == "OK", (res.returncode, res.stderr[-2000:])


@pytest.mark.parametrize("conf", [
    {"listeners": [{"zones": [[b"\x3f" + b"a" * 300 + b"\x00", 0]]}], "blocks": [{}]},
    {"listeners": [{"zones": [[b"\x00", 5]]}], "blocks": [{}]},
    {"listeners": [{"zones": [[b"\x00", -1]]}], "blocks": [{}]},
    {"listeners": [{"zones": [[b"\x00", 0]]}],
     "blocks": [{"stages": [{"kind": "table", "tid": 0, "zones": [b"a" * 256]}]}]},
    {"listeners": [{"zones": [[b"\x00", 0]]}],
     "blocks": [{"stages": [{"kind": "table", "tid": 0, "zones": [],
                             "fallthrough": [b"a" * 256]}]}]},
    {"listeners": [{"zones": [[b"\x00", 0]]}],
     "blocks": [{"stages": [{"kind": "table", "tid": 64, "zones": []}]}]},
    {"listeners": [{"zones": [[b"\x00", 0]]}],
     "blocks": [{"stages": [{"kind": "table", "tid": 0, "zones": []}] * 2}]},
    {"listeners": [{"zones": [[b"\x00", 0]]}], "blocks": [{"stages": [{"kind": "python"}] * 17}]},
    {"listeners": [{"zones": [[b"\x00", 0]]}], "blocks": [{"stages": [{"kind": "nope"}]}]},
], ids=["long-listener-zone", "block-index-past-end", "negative-block", "long-auth-zone",
        "long-fall-zone", "table-id-past-end", "table-id-twice", "too-many-stages",
        "unknown-stage"])
def test_configure_rejects_what_the_c_structs_cannot_hold(conf) -> None:
    """Zone names are copied into 256-byte arrays and block indices index a
    32-entry array: a bad configuration must be a ValueError, not an overflow."""
    e = Engine()
    with pytest.raises(ValueError):
        e.configure(conf)
