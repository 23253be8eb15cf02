"""loadbalance round_robin (shuffled in C, parsed by dnspython) and the log plugin's lines."""

from __future__ import annotations

import re
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rrset
from fastdns._loop import Engine

from fastdns._testing.server import ServeProcess
from tests.ops_support import wait_until
from tests.server_support import make_cluster_dir

HEADLESS = "db.prod.svc.cluster.local."     # 3 ready endpoints


def _order(msg: dns.message.Message) -> tuple[str, ...]:
    return tuple(str(rd) for rrset in msg.answer for rd in rrset)


def test_loadbalance_shuffles_the_same_records(tmp_path: Path) -> None:
    conf = make_cluster_dir(tmp_path, extra="loadbalance")
    with ServeProcess(conf, workers=2) as sp:
        orders = [_order(sp.query(HEADLESS, "A")) for _ in range(40)]
        orders += [_order(sp.query(HEADLESS, "A", tcp=True)) for _ in range(10)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders)
    assert len(orders[0]) == 3
    assert len(set(orders)) >= 3, set(orders)


def test_without_loadbalance_the_order_is_fixed(tmp_path: Path) -> None:
    conf = make_cluster_dir(tmp_path)
    with ServeProcess(conf, workers=1) as sp:
        orders = {_order(sp.query(HEADLESS, "A")) for _ in range(10)}
    assert len(orders) == 1


def test_shuffle_leaves_other_records_and_pointers_alone() -> None:
    """A CNAME then A records of the target: only the A rdata moves; dnspython parses it."""
    q = dns.message.make_query("www.example.org.", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.org.", 30, "IN", "CNAME", "web.example.org."))
    r.answer.append(dns.rrset.from_text("web.example.org.", 30, "IN", "A",
                                        *[f"10.1.0.{i}" for i in range(1, 7)]))
    r.additional.append(dns.rrset.from_text("x.example.org.", 30, "IN", "A", "10.9.9.9"))
    wire = r.to_wire()
    e = Engine()
    seen = set()
    for _ in range(30):
        out = dns.message.from_wire(e.shuffle_answer(wire))
        assert out.answer[0] == r.answer[0] and out.additional == r.additional
        assert sorted(map(str, out.answer[1])) == sorted(map(str, r.answer[1]))
        seen.add(tuple(map(str, out.answer[1])))
    assert len(seen) > 5
    assert e.shuffle_answer(wire[:20]) == wire[:20]        # truncated: untouched


# TCP lines have no peer address yet ("-:0"): the TCP path does not pass it to the engine
LINE = re.compile(r'^\[INFO\] (?:127\.0\.0\.1|-):\d+ - (\d+) "(\S+) IN (\S+) (udp|tcp) (\d+) '
                  r'(true|false) (\d+)" (\S+) ([a-z,]+) (\d+) ([0-9.]+)s$', re.MULTILINE)


def test_log_lines_in_coredns_common_format(tmp_path: Path) -> None:
    conf = make_cluster_dir(tmp_path, extra="log")
    with ServeProcess(conf, workers=2) as sp:
        q = dns.message.make_query("api.prod.svc.cluster.local.", "A")
        r = dns.query.udp(q, "127.0.0.1", port=sp.port, timeout=2)
        n = sp.query("nope.prod.svc.cluster.local.", "AAAA", tcp=True)
        assert n.rcode() == dns.rcode.NXDOMAIN
        wait_until(lambda: len([m for m in LINE.finditer(sp.output())
                                if m.group(3).startswith(("api.", "nope."))]) >= 2,
                   what="two log lines")
        lines = {m.group(3): m for m in LINE.finditer(sp.output())}
    a = lines["api.prod.svc.cluster.local."]
    assert int(a.group(1)) == q.id and a.group(2) == "A" and a.group(4) == "udp"
    assert int(a.group(5)) == len(q.to_wire()) and a.group(8) == "NOERROR"
    assert int(a.group(10)) == len(r.to_wire()) and "qr" in a.group(9) and "aa" in a.group(9)
    b = lines["nope.prod.svc.cluster.local."]
    assert b.group(2) == "AAAA" and b.group(4) == "tcp" and b.group(8) == "NXDOMAIN"
