"""forward's upstream TCP connections: reused within ``expire``, at most
``max_idle_conns`` kept idle, none reused past ``max_age`` (counted by the
upstream's own accept count).  Both forwarders, the C one and the Python one (TLS
upstreams, and FASTDNS_PYTHON_FORWARD=1), pipeline queries on a few persistent
connections per upstream."""

from __future__ import annotations

import time
from pathlib import Path

import dns.rcode

import pytest

from fastdns._testing.upstream import StubUpstream
from tests.attacks_support import ask_all
from tests.forward_support import PROBE_BLOCK, serve


def _conf(up: StubUpstream, extra: str = "") -> str:
    # health probes (also over TCP) would add their own connections to the count
    return (PROBE_BLOCK + f". {{\n    forward . {up.hostport} {{\n"
            f"        force_tcp\n        health_check 1h\n{extra}    }}\n}}\n")


PY = {"FASTDNS_PYTHON_FORWARD": "1"}


def _burst(s, tag: str, n: int = 8) -> None:
    got = ask_all(s.host, s.port, [f"{tag}{i}.example." for i in range(n)], timeout=30)
    assert len(got) == n and all(r.rcode() == dns.rcode.NOERROR for r in got.values())


@pytest.mark.parametrize("path", ["c", "python"])
def test_pipelines_on_few_connections_and_caps_idle_ones(tmp_path: Path, path: str) -> None:
    """8 slow queries at once share one connection (pipelined, answered
    out of order by the stub); 40 at once spread over more (16 in flight each before
    another opens).  Within ``expire`` the next burst opens none; with
    ``max_idle_conns 1`` the idle surplus was closed, so it opens some again."""
    env = PY if path == "python" else None
    with StubUpstream("slow", delay=0.3) as up, serve(tmp_path, _conf(up), env=env) as s:
        _burst(s, "a")
        assert up.accepts == 1, up.accepts
        _burst(s, "b")
        assert up.accepts == 1, up.accepts
    for extra, capped in (("", False), ("        max_idle_conns 1\n", True)):
        with StubUpstream("slow", delay=0.3) as up, \
                serve(tmp_path, _conf(up, extra), env=env) as s:
            _burst(s, "c", 40)
            first = up.accepts
            assert 2 <= first <= 4, first               # FW_TCP_PER_UP at most
            _burst(s, "d", 40)
            if capped:
                assert up.accepts > first, (first, up.accepts)
            else:
                assert up.accepts == first, (first, up.accepts)


@pytest.mark.parametrize("path", ["c", "python"])
def test_no_connection_is_reused_past_max_age(tmp_path: Path, path: str) -> None:
    """One query every 0.2 s keeps a connection busy within ``expire``; with
    ``max_age 1s`` it is replaced about once a second, without: never."""
    for extra, more_than_one in (("        expire 1s\n", False),
                                 ("        expire 1s\n        max_age 1s\n", True)):
        with StubUpstream() as up, \
                serve(tmp_path, _conf(up, extra), env=PY if path == "python" else None) as s:
            assert ask_all(s.host, s.port, ["first.example."], timeout=10)
            base = up.accepts
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 3.0:
                got = ask_all(s.host, s.port, [f"q{i}.example."], timeout=10)
                assert got, "no answer"
                i += 1
                time.sleep(0.2)
            assert (up.accepts > base) is more_than_one, (extra, base, up.accepts, i)
