"""``debug``: a Python handler that fails is recovered from (SERVFAIL, the worker keeps
serving, as CoreDNS recovers from a panic) and, with ``debug``, the query's packet is
logged in CoreDNS's hex dump format (which ``text2pcap`` reads back)."""

from __future__ import annotations

import logging
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from fastdns._loop import Engine
from fastdns._testing.server import ServeProcess
from fastdns.config import parse
from fastdns.plugins.debug import hexdump
from fastdns.plugins.runtime import engine_config
from fastdns.worker.miss import MissHandler


class Broken:
    plugin = "broken"

    def resolve(self, q, packet, reply, tcp):  # noqa: ANN001, ANN201 - the resolver protocol
        raise KeyError("a bug")


def _handler(corefile: str) -> MissHandler:
    plan = parse(corefile, filename="Corefile", env={})
    econf = engine_config(plan)
    e = Engine()
    e.configure(econf)
    m = MissHandler(plan, econf, e)
    m.add_resolver(0, Broken(), at="whoami")
    return m


@pytest.mark.parametrize("debug", [False, True])
def test_failing_handler_is_recovered(caplog: pytest.LogCaptureFixture, debug: bool) -> None:
    m = _handler(". {\n" + (" debug\n" if debug else "") + " whoami\n}\n")
    q = dns.message.make_query("example.org.", "A", use_edns=0)
    packet = q.to_wire()
    out: list[bytes] = []
    with caplog.at_level(logging.ERROR, logger="fastdns"):
        m.handle(0, packet, lambda data, src=0: out.append(data))
    assert len(out) == 1 and dns.message.from_wire(out[0]).rcode() == dns.rcode.SERVFAIL
    text = caplog.text
    assert "plugin/broken failed on example.org. 1: KeyError('a bug')" in text
    assert ("debug: 000000 " in text) is debug
    assert ("Traceback" in text) is debug
    if debug:
        assert hexdump(packet) in text


def test_hexdump_format() -> None:
    # CoreDNS's README example, byte for byte
    packet = bytes.fromhex("000a0100000100000000000107657861"
                           "6d706c65056c6f63616c000001000100"
                           "0029100000008000000000")[:0x2a]
    assert hexdump(packet) == (
        "debug: 000000 00 0a 01 00 00 01 00 00 00 00 00 01 07 65 78 61\n"
        "debug: 000010 6d 70 6c 65 05 6c 6f 63 61 6c 00 00 01 00 01 00\n"
        "debug: 000020 00 29 10 00 00 00 80 00 00 00\n"
        "debug: 00002a")


def test_debug_served(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(". {\n debug\n whoami\n}\n")
    with ServeProcess(tmp_path / "Corefile", workers=1, probe=("x.", "A")) as srv:
        r = srv.query("x.", "A")
        assert r.rcode() == dns.rcode.NOERROR and r.additional
