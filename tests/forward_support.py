"""Shared pieces of the forward/cache tests: a served Corefile, timed queries."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query

from fastdns._testing.server import ServeProcess

PROBE = ("ready-probe.invalid.", "A")
#: a block with no plugins: its names are REFUSED (as CoreDNS), so the readiness probe
#: gets an answer that is not SERVFAIL even when every upstream is dead
PROBE_BLOCK = "invalid {\n}\n"


@contextlib.contextmanager
def serve(tmp: Path, corefile: str, workers: int = 1, probe: tuple[str, str] = PROBE,
          name: str = "Corefile") -> Iterator[ServeProcess]:
    """``fastdns serve`` on ``corefile`` (written under ``tmp``) until the block ends."""
    path = tmp / name
    path.write_text(corefile)
    with ServeProcess(path, workers=workers, probe=probe, log_level="debug") as s:
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
