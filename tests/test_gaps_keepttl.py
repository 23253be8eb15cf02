"""cache ``keepttl``: cached answers keep the TTL they were stored with (CoreDNS fakes
"now" to the entry's store time), in the C hit path and for serve_stale answers."""

from __future__ import annotations

import subprocess
import time

from fastdns._testing.upstream import StubUpstream
from tests.forward_support import a_addresses, aged_ttl, ask, serve, wait_until


def _dig_ttl(s, qname: str) -> int:
    out = subprocess.run(["dig", "-p", str(s.port), f"@{s.host}", qname, "A", "+noall",
                          "+answer", "+tries=1", "+time=2"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    fields = out.split()
    assert fields and fields[0] == qname, out
    return int(fields[1])


def test_keepttl_block_serves_the_stored_ttl_other_block_ages(tmp_path):
    with StubUpstream(ttl=300) as up:
        conf = (f"keep.test {{\n cache 300 {{\n  keepttl\n }}\n forward . {up.hostport}\n}}\n"
                f". {{\n cache 300\n forward . {up.hostport}\n}}\n")
        with serve(tmp_path, conf) as s:
            assert ask(s, "a.keep.test.")[0].answer[0].ttl == 300
            sent1 = time.monotonic()
            assert ask(s, "a.aged.test.")[0].answer[0].ttl == 300
            got1 = time.monotonic()
            time.sleep(2.1)
            for _ in range(2):                     # dnspython and dig, both from the cache
                r, _ = ask(s, "a.keep.test.")
                assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 300
                assert _dig_ttl(s, "a.keep.test.") == 300
            sent2 = time.monotonic()
            aged = [ask(s, "a.aged.test.")[0].answer[0].ttl, _dig_ttl(s, "a.aged.test.")]
            got2 = time.monotonic()
            assert all(t in aged_ttl(300, sent2 - got1, got2 - sent1) and t <= 298 for t in aged), aged
            # every answer after the first came from the cache
            assert up.count("a.keep.test.") == 1 and up.count("a.aged.test.") == 1


def test_keepttl_stale_answers_keep_the_stored_ttl(tmp_path):
    with StubUpstream(ttl=2) as up:
        conf = (f". {{\n cache {{\n  success 1000 60 1\n  serve_stale 60s\n  keepttl\n }}\n"
                f" forward . {up.hostport} {{\n  read_timeout 0.5s\n  health_check 0\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            assert ask(s, "stale.example.")[0].answer[0].ttl == 2
            time.sleep(1.1)
            assert ask(s, "stale.example.")[0].answer[0].ttl == 2        # fresh hit, not aged
            up.paused = True
            time.sleep(1.5)                                             # expired: stale now
            r, _ = ask(s, "stale.example.")
            assert a_addresses(r) == ["192.0.2.1"] and r.answer[0].ttl == 2
            # it was the stale entry (the upstream is dark): a refresh was sent for it
            assert wait_until(lambda: up.count("stale.example.") >= 2, 10)
