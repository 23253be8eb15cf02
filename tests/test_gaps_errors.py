"""The ``errors`` plugin: what `fastdns serve` workers print when plugins fail, in
CoreDNS's format (``[ERROR] plugin/errors: RCODE NAME TYPE: TEXT``), with
``consolidate`` and ``show_first``; blocks without ``errors`` print nothing."""

from __future__ import annotations

import re
import threading

import dns.rcode

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from fastdns.worker.errorlog import go_duration
from tests.forward_support import PROBE, PROBE_BLOCK, ask, wait_until

FWD = "  read_timeout 0.5s\n  health_check 0\n"


def _lines(s: ServeProcess, needle: str) -> list[str]:
    return [ln for ln in s.output().splitlines() if needle in ln]


def test_go_duration_as_go_prints_it():
    # time.Duration.String() outputs (Go documentation / playground)
    cases = {300: "5m0s", 30: "30s", 1.5: "1.5s", 0.5: "500ms", 3600: "1h0m0s", 90: "1m30s",
             0.0015: "1.5ms", 0: "0s", 5400.25: "1h30m0.25s"}
    assert {k: go_duration(k) for k in cases} == cases


def test_errors_logged_per_block_in_coredns_format(tmp_path):
    refused = free_port()                     # nothing listens there: ICMP port unreachable
    with StubUpstream("dead") as dead, StubUpstream() as live:
        conf = tmp_path / "Corefile"
        conf.write_text(
            PROBE_BLOCK
            + f"err.test {{\n errors\n forward . {dead.hostport} {{\n{FWD} }}\n}}\n"
            + f"quiet.test {{\n forward . {dead.hostport} {{\n{FWD} }}\n}}\n"
            + f"ref.test {{\n errors\n forward . 127.0.0.1:{refused} {{\n{FWD} }}\n}}\n"
            + f"skip.test {{\n errors\n forward . {live.hostport} {{\n  except x.skip.test\n }}\n}}\n"
            + f"tcp.test {{\n errors\n forward . 127.0.0.1:{refused} {{\n  force_tcp\n{FWD} }}\n}}\n")
        with ServeProcess(conf, workers=2, probe=PROBE) as s:
            for name in ("a.err.test.", "b.quiet.test.", "c.ref.test.", "y.x.skip.test.",
                         "d.tcp.test."):
                assert ask(s, name)[0].rcode() == dns.rcode.SERVFAIL, name
            assert ask(s, "ok.skip.test.")[0].rcode() == dns.rcode.NOERROR
            assert wait_until(lambda: len(_lines(s, "plugin/errors:")) >= 4, 15), s.output()
            lines = _lines(s, "plugin/errors:")
            up = re.escape(dead.hostport)
            assert any(re.search(r"\[ERROR\] plugin/errors: 2 a\.err\.test\. A: read udp "
                                 rf"127\.0\.0\.1:\d+->{up}: i/o timeout$", ln) for ln in lines), lines
            assert any(re.search(r"\[ERROR\] plugin/errors: 2 c\.ref\.test\. A: read udp "
                                 rf"127\.0\.0\.1:\d+->127\.0\.0\.1:{refused}: read: connection "
                                 r"refused$", ln) for ln in lines), lines
            assert any(ln.endswith("[ERROR] plugin/errors: 2 y.x.skip.test. A: plugin/forward: "
                                   "no next plugin found") for ln in lines), lines
            assert any(ln.endswith("[ERROR] plugin/errors: 2 d.tcp.test. A: dial tcp "
                                   f"127.0.0.1:{refused}: connect: connection refused")
                       for ln in lines), lines
            assert not any("quiet.test" in ln or "ok.skip.test" in ln for ln in lines), lines
            assert len(lines) == 4, lines


def test_consolidate_and_show_first(tmp_path):
    refused = free_port()
    with StubUpstream("dead") as dead:
        conf = tmp_path / "Corefile"
        conf.write_text(
            PROBE_BLOCK
            + ". {\n errors {\n  consolidate 2s \".* i/o timeout$\" warning\n"
              "  consolidate 2s \"connection refused$\" show_first\n"
              "  consolidate 2s \"^plugin/forward\" info show_first\n }\n"
            + f" forward . {dead.hostport} {{\n{FWD}  except ref.test skip.test\n }}\n}}\n"
            + f"ref.test {{\n errors {{\n  consolidate 2s \"connection refused$\" show_first\n }}\n"
              f" forward . 127.0.0.1:{refused} {{\n{FWD} }}\n}}\n")
        with ServeProcess(conf, workers=1, probe=PROBE) as s:
            threads = [threading.Thread(target=ask, args=(s, f"t{i}.example.")) for i in range(3)]
            for t in threads:
                t.start()
            for i in range(3):
                assert ask(s, f"r{i}.ref.test.")[0].rcode() == dns.rcode.SERVFAIL
            assert ask(s, "one.skip.test.")[0].rcode() == dns.rcode.SERVFAIL
            for t in threads:
                t.join()
            # show_first: the first refused and the only excepted name at once, at their level
            refused_first = re.compile(r"\[ERROR\] plugin/errors: 2 r0\.ref\.test\. A: read udp "
                                       r".*: read: connection refused$")
            skip_first = ("[INFO] plugin/errors: 2 one.skip.test. A: plugin/forward: "
                          "no next plugin found")
            assert wait_until(lambda: any(refused_first.search(ln) for ln in _lines(s, "r0.ref"))
                              and any(ln.endswith(skip_first) for ln in _lines(s, "one.skip")), 15)
            first = _lines(s, "plugin/errors:")
            assert not any("t0.example" in ln or "r1.ref.test" in ln for ln in first), first
            want = ("[WARNING] plugin/errors: 3 errors like '.* i/o timeout$' occurred in last 2s",
                    "[ERROR] plugin/errors: 3 errors like 'connection refused$' occurred in last 2s")
            assert wait_until(lambda: all(_lines(s, w) for w in want), 15), s.output()
            lines = _lines(s, "plugin/errors:")
            assert not any("errors like '^plugin/forward'" in ln for ln in lines), lines   # one only
            assert len(lines) == 4, lines
