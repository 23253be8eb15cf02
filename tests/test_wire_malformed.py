"""Malformed input: FormatError (or the documented refusal), never a crash."""

from __future__ import annotations

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdns import wire
from tests.wire_corpus import REFUSALS, corpus, valid_queries


@pytest.mark.parametrize("label,packet", corpus(), ids=[c[0] for c in corpus()])
def test_corpus_raises_format_error(label: str, packet: bytes) -> None:
    with pytest.raises(wire.FormatError):
        wire.parse_query(packet)
    # dnspython, the oracle, rejects it too (or it is not a query at all)
    try:
        m = dns.message.from_wire(packet)
    except Exception:
        pass
    else:
        assert (m.flags & 0x8000) or len(m.question) != 1 or label.startswith("pointer-into"), label


@pytest.mark.parametrize("label,packet", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_parse_and_get_their_rcode(label: str, packet: bytes) -> None:
    q = wire.parse_query(packet)
    resp = dns.message.from_wire(wire.error_response(packet))
    assert resp.id == q.id
    if label == "opcode-notify":
        assert q.opcode == 4 and resp.rcode() == 4            # NOTIFY → NOTIMP
    else:
        assert q.edns_version == 1 and resp.rcode() == 16      # BADVERS via OPT


def test_formerr_response_echoes_id_and_is_parseable() -> None:
    pkt = corpus()[-3][1]  # trailing junk: the question parsed
    resp = dns.message.from_wire(wire.error_response(pkt))
    assert resp.rcode() == 1 and resp.id == 0x1234
    assert wire.error_response(b"\x00" * 5) is None            # runt: dropped
    assert wire.error_response(valid_queries()[0]) is None      # valid: not an error


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_format_error(data: bytes) -> None:
    try:
        wire.parse_query(data)
    except wire.FormatError:
        pass
    wire.error_response(data)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(valid_queries()), st.data())
def test_bit_flips_only_format_error(packet: bytes, data) -> None:
    b = bytearray(packet)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    try:
        wire.parse_query(bytes(b))
    except wire.FormatError:
        pass
