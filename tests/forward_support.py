"""Shared pieces of the forward/cache tests: a served Corefile, timed queries, the TTL an
aged cache entry may show, and a barrier that proves every worker has applied what the
coordinator published so far."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query

from fastdns._testing.server import ServeProcess
from tests.server_support import cluster_objects, write_snapshot, write_snapshot_atomic

PROBE = ("ready-probe.invalid.", "A")
#: a block with no plugins: its names are REFUSED (as CoreDNS), so the readiness probe
#: gets an answer that is not SERVFAIL even when every upstream is dead
PROBE_BLOCK = "invalid {\n}\n"


@contextlib.contextmanager
def serve(tmp: Path, corefile: str, workers: int = 1, probe: tuple[str, str] = PROBE,
          name: str = "Corefile", env: dict[str, str | None] | None = None
          ) -> Iterator[ServeProcess]:
    """``fastdns serve`` on ``corefile`` (written under ``tmp``) until the block ends."""
    path = tmp / name
    path.write_text(corefile)
    with ServeProcess(path, workers=workers, probe=probe, log_level="debug", env=env) as s:
        yield s


def ask(s: ServeProcess, qname: str, qtype: str = "A", *, timeout: float = 5.0,
        tcp: bool = False, **make: object) -> tuple[dns.message.Message, float]:
    """(response, seconds) for one query to the server."""
    q = dns.message.make_query(qname, qtype, **make)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    if tcp:
        r = dns.query.tcp(q, s.host, port=s.port, timeout=timeout)
    else:
        r = dns.query.udp(q, s.host, port=s.port, timeout=timeout)
    return r, time.perf_counter() - t0


def wait_until(cond: object, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False


def a_addresses(r: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in r.answer for rd in rrset if hasattr(rd, "address"))


def aged_ttl(ttl: int, at_least: float, at_most: float) -> range:
    """The TTLs a cache may answer with for an entry stored with ``ttl`` whose age is
    between ``at_least`` and ``at_most`` seconds (as the client measured it: from
    the first answer received to the second query sent, and from the first query
    sent to the second answer received).  The cache counts whole seconds of
    CLOCK_MONOTONIC, so the age it sees is ``floor(at_least)`` .. ``ceil(at_most)``;
    nothing here depends on how long the machine took."""
    return range(ttl - math.ceil(at_most), ttl - math.floor(at_least) + 1)


#: the name the barrier block answers (the Service ``api`` of tests.server_support)
BARRIER_NAME = "api.prod.svc.cluster.local."


def barrier_block(snapshot: Path) -> str:
    """A ``cluster.local`` server block served from the snapshot file ``snapshot``
    (written here), for :func:`sync_workers`; use ``probe=(BARRIER_NAME, "A")``."""
    write_snapshot(snapshot, cluster_objects())
    return f"cluster.local {{\n kubernetes cluster.local {{\n  snapshot {snapshot}\n }}\n}}\n"


def sync_workers(s: ServeProcess, snapshot: Path, step: int, queries: int = 40) -> None:
    """A barrier: change the snapshot and wait until every worker answers the change.

    The coordinator publishes one numbered sequence of deltas (health flags,
    compiled answers) and a worker applies them in order, so once every worker
    answers this change, every worker has applied whatever the coordinator had
    published before it was made (say, an upstream marked down).  "Every worker"
    is ``queries`` answers in a row from fresh source ports (the kernel spreads
    them over the workers; a worker still on the old state would answer about
    half of them).  ``step`` must be new for each call on one server.
    """
    ip = f"10.96.1.{20 + step}"
    write_snapshot_atomic(snapshot, cluster_objects(api_ip=ip))

    def answered_by_all() -> bool:
        for _ in range(queries):
            r, _ = ask(s, BARRIER_NAME)
            if a_addresses(r) != [ip]:
                return False
        return True

    assert wait_until(answered_by_all, 30), f"not every worker answers {ip} for {BARRIER_NAME}"
