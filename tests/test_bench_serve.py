"""fastdns-bench against ``fastdns serve`` (the bundled demo cluster), UDP and TCP.

The expected outcome of every k8s-pod lookup comes from dnspython: it walks
the same candidate names against the same server, one query at a time, and
stops at the first positive answer, so the engine's counts (lookups ok and
negative, queries sent, rcodes) must equal the sum over the lookups it
started.
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

import fastdns
from fastdns._testing.server import ServeProcess
from fastdns.bench.load import LoadOptions, run_load
from fastdns.bench.queries import Query, workload_from_queries
from fastdns.bench.report import to_dict
from fastdns.bench.scenario import (
    glibc_candidates,
    k8s_pod_names,
    k8s_pod_workload,
    read_cluster,
    search_list,
)

DEMO = Path(fastdns.__file__).parent / "demo" / "cluster.yaml"
LOOKUPS = 60


@pytest.fixture(scope="module")
def serve():
    with ServeProcess(None, workers=1) as s:
        yield s


def oracle(port: int, pod_ns: str, name: str, tcp: bool) -> tuple[bool, list[int]]:
    """(positive?, rcodes of the queries sent) for one lookup, by dnspython."""
    names, done = glibc_candidates(name, search_list(pod_ns), 5)
    ask = dns.query.tcp if tcp else dns.query.udp
    rcodes: list[int] = []
    i = 0
    while i >= 0:
        rs = [ask(dns.message.make_query(names[i], t), "127.0.0.1", port=port, timeout=3)
              for t in ("A", "AAAA")]
        rcodes += [r.rcode() for r in rs]
        if any(r.rcode() == dns.rcode.NOERROR and r.answer for r in rs):
            return True, rcodes
        rc = rs[1].rcode() if rs[0].rcode() == dns.rcode.NOERROR else rs[0].rcode()
        if rc in (dns.rcode.NOERROR, dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN):
            i = i + 1 if i + 1 < len(names) else -1
        else:
            i = done[i]
    return False, rcodes


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_k8s_pod_scenario_against_fastdns_serve(serve, tcp):
    cluster = read_cluster(DEMO)
    pairs = k8s_pod_names(cluster, LOOKUPS)
    expect = [oracle(serve.port, ns, name, tcp) for ns, name in pairs]
    # the demo answers its own names: most lookups end positive, after an NXDOMAIN walk for some
    assert sum(ok for ok, _ in expect) >= LOOKUPS * 0.7
    assert any(ok and dns.rcode.NXDOMAIN in rc for ok, rc in expect)
    w = k8s_pod_workload(cluster, LOOKUPS)
    # more in flight than the list is long: the closed loop starts them all at once, so
    # the list is walked more than once however slow the machine
    r = run_load(w, LoadOptions(server=("127.0.0.1", serve.port), duration=0.8,
                                concurrency=LOOKUPS + 4, timeout=5.0, tcp=tcp,
                                sockets=2 if tcp else None))
    d = to_dict(r)
    lk = d["lookups"]
    started = lk["started"]
    assert started > LOOKUPS                      # the list was walked more than once
    assert d["lost"] == 0 and lk["lost"] == 0 and d["late"] == 0 and d["unexpected"] == 0
    assert lk["ok"] > 0
    # the lookups started were items 0, 1, 2, ... of the list, cyclically
    done = [expect[k % LOOKUPS] for k in range(started)]
    assert lk["ok"] == sum(ok for ok, _ in done)
    assert lk["negative"] == started - lk["ok"]
    assert d["sent"] == d["answered"] == sum(len(rc) for _, rc in done)
    want: dict[str, int] = {}
    for _, rc in done:
        for c in rc:
            want[dns.rcode.to_text(c)] = want.get(dns.rcode.to_text(c), 0) + 1
    assert d["rcodes"] == want


def test_query_file_over_tcp_against_fastdns_serve(serve):
    queries = [Query("nginx-svc.default.svc.cluster.local", "A"),
               Query("web.default.svc.cluster.local", "AAAA"),
               Query("nope.default.svc.cluster.local", "A")]
    want = [dns.query.tcp(dns.message.make_query(q.name, q.qtype), "127.0.0.1", port=serve.port,
                          timeout=3).rcode() for q in queries]
    assert want == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    r = run_load(workload_from_queries(queries),
                 LoadOptions(server=("127.0.0.1", serve.port), duration=0.8, concurrency=32,
                             timeout=5.0, tcp=True, sockets=4))
    d = to_dict(r)
    n = d["sent"]
    assert n >= 32 and d["answered"] == n and d["lost"] == 0 and d["unexpected"] == 0
    # queries go out in file order, cyclically: every third is the NXDOMAIN one
    assert d["rcodes"] == {"NOERROR": n - n // 3, "NXDOMAIN": n // 3}
    assert d["tcp"] == {"connections": 4, "closed": 0, "connect_errors": 0}
