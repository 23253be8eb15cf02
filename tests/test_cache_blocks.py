"""The cache is per server block, as CoreDNS's: two blocks that answer the same name
from different upstreams never serve each other's cached answers; a reload keeps the
cached answers of a block it leaves as it is and starts a changed block afresh."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import dns.message
import dns.query

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import wait_until


def _a(port: int, name: str) -> list[str]:
    r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    return [rd.address for rrset in r.answer for rd in rrset]


def test_blocks_have_their_own_cache_and_reload_keeps_unchanged_ones(tmp_path: Path) -> None:
    one = {("shared.example.", "A"): ["10.1.1.1"]}
    two = {("shared.example.", "A"): ["10.2.2.2"]}
    three = {("shared.example.", "A"): ["10.3.3.3"]}
    p1, p2 = free_port(), free_port()
    with StubUpstream(records=one) as up1, StubUpstream(records=two) as up2, \
            StubUpstream(records=three) as up3:
        conf = tmp_path / "Corefile"

        def write(second: StubUpstream) -> None:
            tmp = tmp_path / "Corefile.new"
            tmp.write_text(f".:{p1} {{\n cache 300\n forward . {up1.hostport}\n}}\n"
                           f".:{p2} {{\n cache 300\n forward . {second.hostport}\n}}\n")
            os.replace(tmp, conf)
        write(up2)
        with ServeProcess(conf, workers=2, port=p1, probe=("probe.example.", "A")) as srv:
            for _ in range(3):                  # both workers, both blocks, cached after once
                assert _a(p1, "shared.example.") == ["10.1.1.1"]
                assert _a(p2, "shared.example.") == ["10.2.2.2"]
            assert up1.count("shared.example.") == 1 and up2.count("shared.example.") == 1
            # the second block now forwards elsewhere: its cache starts afresh, the first's stays
            write(up3)
            os.kill(srv.pid, signal.SIGHUP)
            assert wait_until(lambda: _a(p2, "shared.example.") == ["10.3.3.3"], timeout=15)
            for _ in range(3):
                assert _a(p1, "shared.example.") == ["10.1.1.1"]
                assert _a(p2, "shared.example.") == ["10.3.3.3"]
            assert up1.count("shared.example.") == 1        # kept across the reload
            assert up3.count("shared.example.") == 1
