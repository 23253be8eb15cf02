"""Protocol behaviour of `fastdns serve` (subprocess): truncation then TCP retry,
EDNS (RFC 6891), FORMERR / NOTIMP / REFUSED (RFC 1035), checked with dnspython
and dig."""

from __future__ import annotations

import socket
import struct
import subprocess
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from fastdns._testing.server import ServeProcess
from tests.server_support import BIG, Reference, make_cluster_dir, sections

BIGNAME = "big.default.svc.cluster.local."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Reference]]:
    conf = make_cluster_dir(tmp_path_factory.mktemp("protocol"))
    with ServeProcess(conf, workers=2) as srv:
        yield srv, Reference(conf)


def _udp_raw(srv: ServeProcess, data: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (srv.host, srv.port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def _dig(srv: ServeProcess, *args: str) -> str:
    out = subprocess.run(["dig", f"@{srv.host}", "-p", str(srv.port), "+time=2", "+tries=1",
                          *args], check=False, capture_output=True, text=True, timeout=10)
    return out.stdout + out.stderr


# -- truncation ---------------------------------------------------------------------

@pytest.mark.parametrize("edns,limit", [(-1, 512), (0, 1232)])
def test_big_answer_truncated_over_udp(served, edns: int, limit: int) -> None:
    srv, ref = served
    q = dns.message.make_query(BIGNAME, "A", use_edns=edns, payload=4096)
    wire = dns.query.udp(q, srv.host, port=srv.port, timeout=2, ignore_trailing=False)
    r = wire
    assert r.flags & dns.flags.TC
    assert len(r.to_wire()) <= limit
    full = {rd.to_text() for rr in ref.message(BIGNAME, "A").answer for rd in rr}
    assert len(full) == BIG
    assert {rd.to_text() for rr in r.answer for rd in rr} <= full


def test_big_answer_complete_over_tcp(served) -> None:
    srv, ref = served
    r = srv.query(BIGNAME, "A", tcp=True, use_edns=0)
    assert not r.flags & dns.flags.TC
    assert sections(r) == sections(ref.message(BIGNAME, "A"))


def test_dig_retries_over_tcp_and_gets_all(served) -> None:
    srv, _ref = served
    out = _dig(srv, BIGNAME)
    assert "Truncated, retrying in TCP mode" in out
    assert f"ANSWER: {BIG}," in out
    answers = [ln.split() for ln in out.splitlines() if ln.startswith("big.")]
    assert len(answers) == BIG and all(f[2:4] == ["IN", "A"] for f in answers)


def test_dig_ignore_shows_tc(served) -> None:
    srv, _ref = served
    out = _dig(srv, "+ignore", BIGNAME)
    flags = out.split("flags:")[1].split(";")[0].split()
    assert "tc" in flags
    assert "Truncated, retrying" not in out


# -- EDNS ----------------------------------------------------------------------------

def test_opt_only_when_the_query_had_one(served) -> None:
    srv, _ref = served
    for tcp in (False, True):
        plain = srv.query("api.prod.svc.cluster.local.", "A", tcp=tcp, use_edns=False)
        assert plain.edns == -1 and plain.opt is None
        ed = srv.query("api.prod.svc.cluster.local.", "A", tcp=tcp, use_edns=0, payload=4096)
        assert ed.edns == 0
        assert ed.payload == 1232


@pytest.mark.parametrize("qname", ["nope.prod.svc.cluster.local.", "example.org."])
def test_opt_on_negative_and_refused_answers(served, qname: str) -> None:
    srv, _ref = served
    r = srv.query(qname, "A", use_edns=0)
    assert r.edns == 0 and r.payload == 1232
    assert srv.query(qname, "A", use_edns=False).edns == -1


def test_do_bit_query_answered(served) -> None:
    srv, ref = served
    r = srv.query("api.prod.svc.cluster.local.", "A", use_edns=0, want_dnssec=True)
    assert r.edns == 0
    assert sections(r)["answer"] == sections(ref.message("api.prod.svc.cluster.local.", "A"))["answer"]


def test_badvers_for_edns_version_1(served) -> None:
    srv, _ref = served
    for tcp in (False, True):
        r = srv.query("api.prod.svc.cluster.local.", "A", tcp=tcp, use_edns=1)
        assert r.rcode() == dns.rcode.BADVERS
        assert r.edns == 0                  # RFC 6891 6.1.3: the version we do support
        assert not r.answer
    out = _dig(srv, "+edns=1", "+noednsnegotiation", "api.prod.svc.cluster.local")
    assert "status: BADVERS" in out


# -- FORMERR / NOTIMP / REFUSED -----------------------------------------------------

def _query_wire(qname: str = "api.prod.svc.cluster.local.", **kw) -> bytes:
    return dns.message.make_query(qname, "A", **kw).to_wire()


def test_servfail_past_the_end_of_the_chain(served) -> None:
    """A name of the block ("."), outside the kubernetes zones, with no plugin after
    it: CoreDNS's "no next plugin found" is SERVFAIL (REFUSED is for a block with
    no plugins, or a name outside every block: tests/test_forward_*'s probe block)."""
    srv, _ref = served
    for tcp in (False, True):
        r = srv.query("www.example.org.", "A", tcp=tcp)
        assert r.rcode() == dns.rcode.SERVFAIL
        assert r.question[0].name.to_text() == "www.example.org."
    assert "status: SERVFAIL" in _dig(srv, "www.example.org")


def test_notimp_for_other_opcodes(served) -> None:
    srv, _ref = served
    for opcode in (dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE):
        q = dns.message.make_query("cluster.local.", "SOA")
        q.set_opcode(opcode)
        data = _udp_raw(srv, q.to_wire())
        assert data is not None, opcode
        r = dns.message.from_wire(data)
        assert r.rcode() == dns.rcode.NOTIMP and r.id == q.id
        assert dns.opcode.from_flags(r.flags) == opcode


@pytest.mark.parametrize("mangle", [
    "two_questions", "no_question", "two_opts", "opt_not_root", "trailing_junk", "cut_in_rr",
])
def test_formerr(served, mangle: str) -> None:
    srv, _ref = served
    wire = bytearray(_query_wire())
    qid = struct.unpack("!H", wire[:2])[0]
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    if mangle == "two_questions":
        q2 = _query_wire("db.prod.svc.cluster.local.")
        wire = wire + q2[12:]
        wire[4:6] = b"\x00\x02"
    elif mangle == "no_question":
        wire = wire[:12]
        wire[4:6] = b"\x00\x00"
    elif mangle == "two_opts":
        wire = wire + opt + opt
        wire[10:12] = b"\x00\x02"
    elif mangle == "opt_not_root":
        wire = wire + b"\x01a\x00" + opt[1:]
        wire[10:12] = b"\x00\x01"
    elif mangle == "trailing_junk":
        wire = wire + b"\xde\xad"
    elif mangle == "cut_in_rr":
        wire = wire + opt[:5]
        wire[10:12] = b"\x00\x01"
    data = _udp_raw(srv, bytes(wire))
    assert data is not None, mangle
    hdr = struct.unpack("!HHHHHH", data[:12])
    assert hdr[0] == qid
    assert hdr[1] & 0x8000                       # QR
    assert hdr[1] & 0xF == dns.rcode.FORMERR
    assert hdr[3] == hdr[4] == 0                 # no answer, no authority


def test_responses_and_runts_are_dropped(served) -> None:
    """A message with QR set is never answered (no reflection loops); nor are runts."""
    srv, _ref = served
    resp = dns.message.make_response(dns.message.make_query("cluster.local.", "SOA")).to_wire()
    assert _udp_raw(srv, resp, 0.3) is None
    assert _udp_raw(srv, b"\x12\x34\x01", 0.3) is None
    r = srv.query("cluster.local.", "SOA")       # still serving
    assert r.rcode() == dns.rcode.NOERROR


def test_tcp_pipelined_queries_answered_in_one_connection(served) -> None:
    srv, ref = served
    names = ["api.prod.svc.cluster.local.", BIGNAME, "db.prod.svc.cluster.local.",
             "nope.prod.svc.cluster.local."]
    qs = [dns.message.make_query(n, "A") for n in names]
    with socket.create_connection((srv.host, srv.port), timeout=3) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in qs)))
        buf = b""
        got = {}
        while len(got) < len(qs):
            chunk = s.recv(65535)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                m = dns.message.from_wire(buf[2:2 + n])
                buf = buf[2 + n:]
                got[m.id] = m
    for q, name in zip(qs, names, strict=True):
        assert sections(got[q.id]) == sections(ref.message(name, "A"))
