"""forward ``except``: an excepted name passes down the chain and, with no plugin after
forward, gets SERVFAIL (CoreDNS's plugin.NextOrFailure: "no next plugin found"); a
name in no server block stays REFUSED; FROM itself is forwarded even when excepted
(CoreDNS's isAllowedDomain)."""

from __future__ import annotations

import dns.rcode

from fastdns._testing.upstream import StubUpstream
from tests.forward_support import PROBE_BLOCK, a_addresses, ask, serve


def test_excepted_names_servfail_outside_names_refused(tmp_path):
    with StubUpstream() as up:
        conf = (PROBE_BLOCK
                + f"example.org {{\n forward example.org {up.hostport} {{\n"
                  f"  except skip.example.org\n }}\n}}\n"
                  f"apex.test {{\n forward apex.test {up.hostport} {{\n  except apex.test\n }}\n}}\n")
        with serve(tmp_path, conf) as s:
            for tcp in (False, True):
                r, _ = ask(s, "host.skip.example.org.", tcp=tcp)
                assert r.rcode() == dns.rcode.SERVFAIL and not r.answer
            assert up.count("host.skip.example.org.") == 0
            r, _ = ask(s, "www.example.org.")              # not excepted: forwarded
            assert a_addresses(r) == ["192.0.2.1"] and up.count("www.example.org.") == 1
            r, _ = ask(s, "apex.test.")                    # FROM itself: forwarded
            assert a_addresses(r) == ["192.0.2.1"] and up.count("apex.test.") == 1
            r, _ = ask(s, "www.apex.test.")                # below it: excepted
            assert r.rcode() == dns.rcode.SERVFAIL and up.count("www.apex.test.") == 0
            r, _ = ask(s, "www.example.com.")              # no block: REFUSED
            assert r.rcode() == dns.rcode.REFUSED and up.count("www.example.com.") == 0
