"""Parse a query and build a one-A-record answer: fastdns vs dnspython, same run.

    python benchmarks/bench_wire.py [--seconds S]

Three paths on the same packets:
  dnspython  from_wire + make_response + rrset + to_wire
  python     fastdns.wire.parse_query + ResponseBuilder.add + to_wire
  c          parse_query + emit_body in C (what the worker loop runs), timed in C
"""

from __future__ import annotations

import argparse
import time

import dns.message
import dns.rrset

from fastdns import _wire, wire
from fastdns.records import Answer, Record

NAMES = [f"svc-{i}.ns-{i % 7}.svc.cluster.local." for i in range(64)]


def packets() -> list[bytes]:
    return [dns.message.make_query(n, "A", use_edns=0).to_wire() for n in NAMES]


def per_op(fn, pkts: list[bytes], seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for p in pkts:
            fn(p)
        n += len(pkts)
    return (time.perf_counter() - t0) / n * 1e9


def dnspython_path(p: bytes) -> bytes:
    q = dns.message.from_wire(p)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "10.0.0.1"))
    return r.to_wire()


def python_path(p: bytes) -> bytes:
    q = wire.parse_query(p)
    return wire.ResponseBuilder(q).add("answer", None, wire.A, 30, "10.0.0.1").to_wire()


def c_path_ns(pkts: list[bytes], seconds: float) -> float:
    best = []
    for p, name in zip(pkts[:8], NAMES):
        body = wire.encode_answer(name, wire.A, Answer(0, (Record(name, wire.A, 30, "10.0.0.1"),)))
        n = 200_000
        ns = _wire._c_roundtrip_loop(p, body, n)
        while ns < seconds / 8 * 1e9:
            n *= 2
            ns = _wire._c_roundtrip_loop(p, body, n)
        best.append(ns / n)
    return sum(best) / len(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    pkts = packets()
    # sanity: all three give a parseable one-A answer
    for fn in (dnspython_path, python_path):
        assert len(dns.message.from_wire(fn(pkts[0])).answer[0]) == 1
    d = per_op(dnspython_path, pkts, args.seconds)
    py = per_op(python_path, pkts, args.seconds)
    c = c_path_ns(pkts, args.seconds)
    print(f"dnspython : {d:10.0f} ns/query")
    print(f"python API: {py:10.0f} ns/query   {d / py:6.1f}x dnspython (goal >= 10x)")
    print(f"C level   : {c:10.1f} ns/query   {d / c:6.1f}x dnspython (goal >= 50x)")


if __name__ == "__main__":
    main()
