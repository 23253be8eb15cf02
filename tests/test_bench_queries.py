"""fastdns-bench's query encoding: the fast path for plain names gives exactly the
bytes dnspython gives (the oracle), and every other spelling still goes through
dnspython with its errors."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdatatype
import pytest

from fastdns.bench import queries
from fastdns.errors import BenchError

NAMES = ["www.example.com", "www.example.com.", "a", "A-b_c.*.Example.ORG.", ".",
         "10-0-1-2.bench.pod.cluster.local", "x" * 63 + ".example.",
         ".".join(["abcdefg"] * 31)]                # 248 bytes: near the 255 limit
TYPES = ["A", "aaaa", "SRV", "PTR", "TXT", "ANY", "TYPE65", "soa"]


@pytest.mark.parametrize("edns", [False, True])
def test_plain_names_encode_as_dnspython_does(edns):
    for name in NAMES:
        assert queries.name_wire(name) is not None, name
        for qtype in TYPES:
            wire, qend = queries.encode_query(name, qtype, edns)
            msg = dns.message.make_query(dns.name.from_text(name), dns.rdatatype.from_text(qtype),
                                         use_edns=0 if edns else False, payload=1232)
            msg.id = 0
            assert wire == msg.to_wire(), (name, qtype)
            assert qend == 12 + len(dns.name.from_text(name).to_wire()) + 4


def test_other_spellings_go_through_dnspython():
    for name in [r"a\.b.example.", r"\065bc.example.", "x" * 64 + ".example.",
                 ".".join(["abcdefgh"] * 31), "caf\u00e9.example."]:
        assert queries.name_wire(name) is None, name
    wire, _ = queries.encode_query(r"\065bc.example.", "A")
    assert dns.message.from_wire(wire).question[0].name == dns.name.from_text("Abc.example.")


def test_bad_lines_name_the_line():
    with pytest.raises(BenchError, match=r"q:2: bad name"):
        queries.parse_query_lines(["ok.example A", "x" * 64 + ".example A"], "q")
    with pytest.raises(BenchError, match=r"q:1: unknown query type 'NOPE'"):
        queries.parse_query_lines(["ok.example NOPE"], "q")
    with pytest.raises(BenchError, match=r"q:1: OPT is not a query type"):
        queries.parse_query_lines(["ok.example OPT"], "q")
    assert queries.parse_query_lines(["ok.example aaaa"], "q") == [queries.Query("ok.example", "AAAA")]
