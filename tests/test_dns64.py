"""``dns64`` (RFC 6147): CoreDNS's own tables, parsed and served by `fastdns serve`.

* plugin/dns64/setup_test.go (TestSetupDns64) through the Corefile parser, with the
  located errors fastdns gives, plus what fastdns refuses where CoreDNS does not;
* plugin/dns64/dns64_test.go: TestTo6 on the address layout, and TestDNS64,
  TestRequestShouldIntercept and TestResponseShould asked of a real server over UDP and
  TCP with dnspython — the "downstream" answers and the A answers of CoreDNS's fakes
  are given by a stub upstream on loopback behind ``forward``, the client is on ::1
  (IPv6) or 127.0.0.1 (IPv4);
* the same synthesis from answers the C engine gives (a ``file`` zone, ``hosts``, the
  kubernetes table and the cache), truncation, and kops's IPv6 Corefile as it ships.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from fastdns.config import parse
from fastdns.errors import ConfigError
from fastdns.plugins.dns64.conf import DEFAULT_PREFIX, Dns64Conf
from fastdns.plugins.dns64.serve import is_ipv6_client, to6, with_qtype
from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
import tests.test_distro_corefiles as _distro
from tests.server_support import cluster_objects, write_snapshot

V6, V4 = "::1", "127.0.0.1"
SOA70 = "example.com. 70 IN SOA foo. bar. 1 1 1 1 1"
SOA3600 = "example.com. 3600 IN SOA foo. bar. 1 7200 900 1209600 86400"


# --- setup_test.go: TestSetupDns64 --------------------------------------------------------

def _conf(block: str) -> Dns64Conf:
    return parse(f". {{\n{block}\n}}\n", filename="Corefile", env={}).servers[0].plugin("dns64")


def _err(block: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(f". {{\n{block}\n}}\n", filename="C", env={})
    return info.value


def _check(block: str, where: str, message: str) -> None:
    err = _err(block)
    assert err.file == "C"
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


@pytest.mark.parametrize("block,prefix,allow_ipv4,translate_all", [
    ("dns64", "64:ff9b::/96", False, False),
    ("dns64 64:dead::/96", "64:dead::/96", False, False),
    ("dns64 {\n translate_all\n}", "64:ff9b::/96", False, True),
    ("dns64 {\n prefix 64:ff9b::/96\n}", "64:ff9b::/96", False, False),
    ("dns64 {\n prefix 64:ff9b::/32\n}", "64:ff9b::/32", False, False),
    ("dns64 {\n prefix 2002:ac12:b083::/96\n}", "2002:ac12:b083::/96", False, False),
    ("dns64 {\n prefix 2002:c0a8:a88a::/48\n}", "2002:c0a8:a88a::/48", False, False),
    ("dns64 {\n allow_ipv4\n}", "64:ff9b::/96", True, False),
    # fastdns's own: host bits dropped (Go's ParseCIDR), every RFC 6052 length, an
    # empty block after PREFIX, all three properties together
    ("dns64 64:ff9b::1.2.3.4/96", "64:ff9b::/96", False, False),
    ("dns64 2001:db8:100::/40", "2001:db8:100::/40", False, False),
    ("dns64 2001:db8:0:100::/56", "2001:db8:0:100::/56", False, False),
    ("dns64 2001:db8:1:2::/64", "2001:db8:1:2::/64", False, False),
    ("dns64 64:1337::/96 {\n}", "64:1337::/96", False, False),
    ("dns64 {\n translate_all\n prefix 64:1337::/96\n allow_ipv4\n}", "64:1337::/96", True,
     True),
])
def test_setup(block: str, prefix: str, allow_ipv4: bool, translate_all: bool) -> None:
    assert _conf(block) == Dns64Conf(prefix, translate_all, allow_ipv4)


def test_setup_default_and_lines_merged() -> None:
    assert _conf("dns64") == Dns64Conf() and Dns64Conf().prefix == DEFAULT_PREFIX
    # CoreDNS's setup loops over every dns64 line of the block: the last prefix wins,
    # a flag on any line holds
    assert _conf("dns64 64:1::/96\ndns64 {\n allow_ipv4\n}\ndns64 64:2::/96") == \
        Dns64Conf("64:2::/96", False, True)
    assert _conf("dns64 {\n translate_all\n}\ndns64") == Dns64Conf(DEFAULT_PREFIX, True, False)


@pytest.mark.parametrize("block,where,message", [
    # setup_test.go's failing cases
    ("dns64 {\n prefix 64:ff9b::/52\n}", "3:9", "invalid prefix length '64:ff9b::/52'"),
    ("dns64 {\n prefix 64:ff9b::/104\n}", "3:9", "invalid prefix length '64:ff9b::/104'"),
    ("dns64 {\n prefix 8.8.8.8/24\n}", "3:9", "invalid prefix '8.8.8.8/24': dns64 needs an IPv6"),
    ("dns64 foobar {\n prefix 64:ff9b::/96\n}", "2:7", "invalid CIDR address: foobar"),
    ("dns64 foobar", "2:7", "invalid CIDR address: foobar"),
    ("dns64 {\n foobar\n}", "3:2", "unknown property 'foobar' in 'dns64'"),
    # what CoreDNS accepts and fastdns refuses (README, Differences from CoreDNS)
    ("dns64 64:ff9b::/72", "2:7", "invalid prefix length '64:ff9b::/72'"),
    ("dns64 64:ff9b::/80", "2:7", "invalid prefix length '64:ff9b::/80'"),
    ("dns64 64:ff9b::/88", "2:7", "invalid prefix length '64:ff9b::/88'"),
    ("dns64 64:ff9b:0:0:100::/96", "2:7", "invalid prefix '64:ff9b:0:0:100::/96': bits 64 to 71"),
    ("dns64 64:ff9b::/96 {\n allow_ipv4\n}", "3:2",
     "a 'dns64' line with a PREFIX argument takes no block"),
    # the rest of the syntax
    ("dns64 64:ff9b::", "2:7", "invalid CIDR address: 64:ff9b::"),
    ("dns64 fe80::%eth0/64", "2:7", "invalid CIDR address: fe80::%eth0/64"),
    ("dns64 64:ff9b::/96 64:ff9c::/96", "2:20", "wrong number of arguments for 'dns64'"),
    ("dns64 {\n prefix\n}", "3:2", "wrong number of arguments for 'prefix'"),
    ("dns64 {\n prefix 64:ff9b::/96 64:1::/96\n}", "3:22",
     "wrong number of arguments for 'prefix'"),
    ("dns64 {\n translate_all yes\n}", "3:16", "'translate_all' takes no arguments"),
    ("dns64 {\n allow_ipv4 on\n}", "3:13", "'allow_ipv4' takes no arguments"),
    ("dns64 {\n prefix 64:ff9b::/96 {\n }\n}", "3:22", "unexpected block after 'prefix'"),
])
def test_setup_errors(block: str, where: str, message: str) -> None:
    _check(block, where, message)


def test_check_config_names_the_line(tmp_path: Path) -> None:
    """A broken dns64 line stops check-config and serve with the file, line and column."""
    (tmp_path / "Corefile").write_text(". {\n    dns64 {\n        prefix 64:ff9b::/52\n    }\n"
                                       "    forward . 127.0.0.1:5399\n}\n")
    for cmd in (["check-config", str(tmp_path / "Corefile")],
                ["serve", "--conf", str(tmp_path / "Corefile"), "--port", str(free_port())]):
        p = subprocess.run([sys.executable, "-m", "fastdns", *cmd], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode != 0
        assert f"{tmp_path / 'Corefile'}:3:16" in p.stdout + p.stderr, p.stdout + p.stderr
        assert "invalid prefix length '64:ff9b::/52'" in p.stdout + p.stderr


def test_check_config_explains_it_served(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(". {\n    dns64 64:1337::/96\n"
                                       "    forward . 127.0.0.1:5399\n}\n")
    p = subprocess.run([sys.executable, "-m", "fastdns", "check-config",
                        str(tmp_path / "Corefile")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dns64" in p.stdout and "NOT SERVED" not in p.stdout


# --- dns64_test.go: TestTo6 and the address layout ----------------------------------------

def _to6(prefix: str, v4: str) -> str:
    return str(ipaddress.IPv6Address(to6(ipaddress.IPv6Network(prefix),
                                         ipaddress.IPv4Address(v4).packed)))


@pytest.mark.parametrize("prefix,v4,v6", [
    ("64:ff9b::/96", "64.64.64.64", "64:ff9b::4040:4040"),
    ("64:ff9b::/64", "64.64.64.64", "64:ff9b::40:4040:4000:0"),
    ("64:ff9b::/56", "64.64.64.64", "64:ff9b:0:40:40:4040::"),
    ("64::/32", "64.64.64.64", "64:0:4040:4040::"),
    # RFC 6052 section 2.4's table (192.0.2.33 in 2001:db8::/32 ... /96)
    ("2001:db8::/32", "192.0.2.33", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "192.0.2.33", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "192.0.2.33", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "192.0.2.33", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "192.0.2.33", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "192.0.2.33", "2001:db8:122:344::192.0.2.33"),
    ("64:ff9b::/96", "192.0.2.33", "64:ff9b::192.0.2.33"),
])
def test_to6(prefix: str, v4: str, v6: str) -> None:
    assert _to6(prefix, v4) == str(ipaddress.IPv6Address(v6))


def test_client_family_and_question_rewrite() -> None:
    assert is_ipv6_client(("::1", 53, 0, 0)) and is_ipv6_client(("fe80::1%lo", 53, 0, 1))
    assert not is_ipv6_client(("127.0.0.1", 53))
    assert not is_ipv6_client(("::ffff:127.0.0.1", 53, 0, 0))   # Go's To4: IPv4
    assert not is_ipv6_client(None)
    q = dns.message.make_query("Mixed.Example.", "AAAA", want_dnssec=True)
    a = dns.message.from_wire(with_qtype(q.to_wire(), 1))
    assert (a.id, a.question[0].name.to_text(), a.question[0].rdtype, a.ednsflags) == \
        (q.id, "Mixed.Example.", 1, q.ednsflags)


# --- dns64_test.go: TestDNS64, TestRequestShouldIntercept, TestResponseShould -------------

def _msg(q: dns.message.Message, rcode: int = 0, answer: tuple[str, ...] = (),
         authority: tuple[str, ...] = (), tc: bool = False) -> dns.message.Message:
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA
    if tc:
        r.flags |= dns.flags.TC
    r.set_rcode(rcode)
    qname = q.question[0].name
    for text in answer:
        r.answer.append(_rr(f"{qname} {text}") if text[0].isdigit() else _rr(text))
    for text in authority:
        r.authority.append(_rr(text))
    return r


def _rr(text: str) -> dns.rrset.RRset:
    name, ttl, cls, typ, rdata = text.split(" ", 4)
    return dns.rrset.from_text(name, int(ttl), cls, typ, rdata)


A42_43 = ("60 IN A 192.0.2.42", "5000 IN A 192.0.2.43")
NS25 = tuple(f"truncated.test. 300 IN NS ns-0123456789-{i}.example." for i in range(25))

# name → (the first answer, for AAAA: initResp; the A answer: aResp), as in TestDNS64,
# then the cases of TestResponseShould and fastdns's own
TABLE = {
    # "standard flow": no AAAA record, an A record: DNS64
    "standard": (lambda q: _msg(q, authority=(SOA70,)), lambda q: _msg(q, answer=A42_43)),
    # "a empty": the name has neither A nor AAAA records
    "aempty": (lambda q: _msg(q, authority=(SOA3600,)), lambda q: _msg(q, authority=(SOA3600,))),
    # "non-nxdomain error": REFUSED is an empty answer
    "refused": (lambda q: _msg(q, dns.rcode.REFUSED), lambda q: _msg(q, answer=A42_43)),
    # "nxdomain": no A question at all
    "nxdomain": (lambda q: _msg(q, dns.rcode.NXDOMAIN, authority=(SOA3600,)), None),
    # "AAAA record": as it is
    "aaaa": (lambda q: _msg(q, answer=("60 IN AAAA ::1", "5000 IN AAAA ::2")), None),
    # "truncated A response": TC is kept.  The A answer has 25 NS records in its
    # authority section, so it is cut for a client without EDNS (512 bytes) and comes
    # back with TC from the chain (a TC answer of the upstream itself is retried over
    # TCP by forward, which gives the complete answer)
    "truncated": (lambda q: _msg(q, authority=(SOA70,)),
                  lambda q: _msg(q, answer=A42_43, authority=NS25)),
    # TestResponseShould: "Failure, except NameError, should be true"
    "notimp": (lambda q: _msg(q, dns.rcode.NOTIMP, authority=(SOA70,)),
               lambda q: _msg(q, answer=A42_43)),
    "servfail": (lambda q: _msg(q, dns.rcode.SERVFAIL), lambda q: _msg(q, answer=A42_43)),
    # CNAMEs are kept, the target's A records translated (RFC 6147 5.3.3)
    "alias": (lambda q: _msg(q, answer=("alias.test. 300 IN CNAME target.test.",),
                             authority=("test. 45 IN SOA ns.test. admin.test. 1 2 3 4 5",)),
              lambda q: _msg(q, answer=("alias.test. 300 IN CNAME target.test.",
                                        "target.test. 120 IN A 198.51.100.7"),
                             authority=("test. 45 IN NS ns.test.",))),
    # an NXDOMAIN *with* answer records is not a name error for CoreDNS (Typify: OtherError)
    "cnamenx": (lambda q: _msg(q, dns.rcode.NXDOMAIN,
                               answer=("cnamenx.test. 300 IN CNAME gone.test.",),
                               authority=(SOA3600,)),
                lambda q: _msg(q, dns.rcode.NXDOMAIN,
                               answer=("cnamenx.test. 300 IN CNAME gone.test.",),
                               authority=(SOA3600,))),
    # the A question fails too: NOERROR and nothing (CoreDNS's SetReply)
    "bothfail": (lambda q: _msg(q, dns.rcode.SERVFAIL), lambda q: _msg(q, dns.rcode.SERVFAIL)),
    # many A records: the AAAA answer does not fit 512 bytes
    "many": (lambda q: _msg(q, authority=(SOA3600,)),
             lambda q: _msg(q, answer=tuple(f"300 IN A 192.0.2.{i}" for i in range(1, 26)))),
    # an expired signature (DO) makes the NXDOMAIN "OtherError" for CoreDNS's Typify
    "expired": (lambda q: _signed_nx(q), lambda q: _msg(q, answer=("60 IN A 192.0.2.99",))),
    # dnssec-free AAAA + A for the translate_all block
    "dual": (lambda q: _msg(q, answer=("60 IN AAAA 2001:db8::5",)),
             lambda q: _msg(q, answer=("90 IN A 192.0.2.5",))),
}


def _signed_nx(q: dns.message.Message) -> dns.message.Message:
    r = _msg(q, dns.rcode.NXDOMAIN, authority=(SOA3600,))
    r.authority.append(_rr("example.com. 3600 IN RRSIG SOA 8 2 3600 20000102000000 "
                           "20000101000000 12345 example.com. AAAA"))
    return r


def _upstream_handler(q: dns.message.Message) -> dns.message.Message | None:
    qs = q.question[0]
    first = qs.name.labels[0].decode().lower() if qs.name.labels else ""
    if first not in TABLE or qs.rdclass != dns.rdataclass.IN:
        return None
    aaaa, a = TABLE[first]
    if qs.rdtype == dns.rdatatype.AAAA:
        return aaaa(q)
    if qs.rdtype == dns.rdatatype.A and a is not None:
        return a(q)
    return _msg(q, dns.rcode.SERVFAIL)          # a question CoreDNS's fakes would refuse


BLOCKS = {
    "default": "dns64",
    "allow_ipv4": "dns64 {\n        allow_ipv4\n    }",
    "translate_all": "dns64 {\n        translate_all\n    }",
    "p32": "dns64 64::/32",
    "p56": "dns64 64:ff9b::/56",
    "p64": "dns64 {\n        prefix 64:ff9b::/64\n    }",
    "drop_a": "dns64\n    acl {\n        drop type A\n    }",
    "nsid": "dns64\n    nsid fastdns-test",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServeProcess, StubUpstream, dict[str, int]]]:
    tmp = tmp_path_factory.mktemp("dns64")
    ports = {name: free_port() for name in BLOCKS}
    with StubUpstream(handler=_upstream_handler) as up:
        (tmp / "Corefile").write_text("".join(
            f".:{ports[name]} {{\n    bind {V4} {V6}\n    {body}\n    forward . {up.hostport}\n}}\n"
            for name, body in BLOCKS.items()))
        with ServeProcess(tmp / "Corefile", workers=2, port=ports["default"],
                          probe=("probe.test.", "A")) as srv:
            yield srv, up, ports


def ask(port: int, qname: str, qtype: str = "AAAA", *, tcp: bool = False, host: str = V6,
        qclass: str = "IN", payload: int | None = 1232, do: bool = False) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, qclass, use_edns=payload is not None or do,
                               payload=payload or 1232, want_dnssec=do)
    if tcp:
        r = dns.query.tcp(q, host, port=port, timeout=5, one_rr_per_rrset=True)
    else:
        r = dns.query.udp(q, host, port=port, timeout=5, one_rr_per_rrset=True,
                          ignore_trailing=True)
    assert r.id == q.id
    return r


def rrs(msg: dns.message.Message, section: str = "answer") -> list[str]:
    """One line per record, in the order of the message (each keeps its own TTL)."""
    return [f"{rrset.name} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
            f"{dns.rdatatype.to_text(rrset.rdtype)} {rd}"
            for rrset in getattr(msg, section) for rd in rrset]


def flags(msg: dns.message.Message) -> set[str]:
    return set(dns.flags.to_text(msg.flags).split())


def a_questions(up: StubUpstream, name: str) -> int:
    with up.lock:
        return sum(1 for n, t, _ in up.log if n == name and t == dns.rdatatype.A)


def a_answer_tc(port: int) -> bool:
    """Does the chain's own A answer for truncated.test. come with TC (no EDNS, UDP)?"""
    return "TC" in flags(ask(port, "truncated.test.", "A", payload=None))


TCP = pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])


@TCP
def test_dns64_table(served: tuple[ServeProcess, StubUpstream, dict[str, int]], tcp: bool) -> None:
    """TestDNS64's six cases, from an IPv6 client."""
    _, up, p = served
    port = p["default"]
    # standard flow: the second record's TTL is the SOA's (70), lower than its own
    r = ask(port, "standard.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and flags(r) == {"QR", "RD"}     # no AA, RA, AD
    assert rrs(r) == ["standard.test. 60 IN AAAA 64:ff9b::c000:22a",
                      "standard.test. 70 IN AAAA 64:ff9b::c000:22b"]
    assert rrs(r, "authority") == [] and rrs(r, "additional") == []
    assert r.question[0].rdtype == dns.rdatatype.AAAA
    # a empty: NOERROR, no records, the A answer's authority section
    r = ask(port, "aempty.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and rrs(r) == []
    assert rrs(r, "authority") == [SOA3600]
    # non-nxdomain error: translated, NOERROR; no SOA: the TTL is at most 600
    r = ask(port, "refused.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert rrs(r) == ["refused.test. 60 IN AAAA 64:ff9b::c000:22a",
                      "refused.test. 600 IN AAAA 64:ff9b::c000:22b"]
    # nxdomain: as it is, and no A question asked
    before = a_questions(up, "nxdomain.test.")
    r = ask(port, "nxdomain.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and rrs(r) == []
    assert rrs(r, "authority") == [SOA3600]
    assert "RA" in flags(r)                                 # the upstream's answer, unchanged
    assert a_questions(up, "nxdomain.test.") == before
    # AAAA record: as it is, each record its TTL, no A question
    before = a_questions(up, "aaaa.test.")
    r = ask(port, "aaaa.test.", tcp=tcp)
    assert rrs(r) == ["aaaa.test. 60 IN AAAA ::1", "aaaa.test. 5000 IN AAAA ::2"]
    assert a_questions(up, "aaaa.test.") == before
    # truncated A response (see TABLE): the synthesised answer has TC too
    r = ask(port, "truncated.test.", tcp=tcp, payload=None)
    assert rrs(r) == ["truncated.test. 60 IN AAAA 64:ff9b::c000:22a",
                      "truncated.test. 70 IN AAAA 64:ff9b::c000:22b"]
    assert r.rcode() == dns.rcode.NOERROR
    if tcp:                                 # nothing cut: the whole authority section
        assert "TC" not in flags(r) and len(r.authority) == 25
    else:
        assert "TC" in flags(r) and len(r.authority) < 25
        assert a_answer_tc(port)


@TCP
def test_request_should_intercept(served: tuple[ServeProcess, StubUpstream, dict[str, int]],
                                  tcp: bool) -> None:
    """TestRequestShouldIntercept: IPv6 clients always, IPv4 clients only with
    allow_ipv4, AAAA questions of class IN only."""
    _, up, p = served
    synthesised = ["standard.test. 60 IN AAAA 64:ff9b::c000:22a",
                   "standard.test. 70 IN AAAA 64:ff9b::c000:22b"]
    # allow_ipv4, from ::1 and from 127.0.0.1: translated
    assert rrs(ask(p["allow_ipv4"], "standard.test.", tcp=tcp, host=V6)) == synthesised
    assert rrs(ask(p["allow_ipv4"], "standard.test.", tcp=tcp, host=V4)) == synthesised
    # without allow_ipv4, from 127.0.0.1: the chain's answer as it is
    r = ask(p["default"], "standard.test.", tcp=tcp, host=V4)
    assert rrs(r) == [] and rrs(r, "authority") == [SOA70]
    assert "RA" in flags(r)
    # an A question from ::1: not intercepted, the A answer as it is
    r = ask(p["default"], "standard.test.", "A", tcp=tcp)
    assert rrs(r) == ["standard.test. 60 IN A 192.0.2.42", "standard.test. 5000 IN A 192.0.2.43"]
    # AAAA of another class: not intercepted (no A question reaches the upstream, the
    # upstream's answer comes back as it is)
    with up.lock:
        before = len(up.log)
    r = ask(p["default"], "standard.test.", qclass="CH", tcp=tcp)
    with up.lock:
        asked = [(n, t) for n, t, _ in up.log[before:]]
    assert asked == [("standard.test.", dns.rdatatype.AAAA)]
    assert "RA" in flags(r) and not any("64:ff9b" in x for x in rrs(r))


@TCP
def test_response_should(served: tuple[ServeProcess, StubUpstream, dict[str, int]],
                         tcp: bool) -> None:
    """TestResponseShould: failures but NXDOMAIN are translated; an AAAA answer is
    translated only with translate_all."""
    _, up, p = served
    for name in ("notimp.test.", "servfail.test."):
        r = ask(p["default"], name, tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR, name
        assert [x.split()[-1] for x in rrs(r)] == ["64:ff9b::c000:22a", "64:ff9b::c000:22b"]
    ttls = [rrset.ttl for rrset in ask(p["default"], "notimp.test.", tcp=tcp).answer]
    assert ttls == [60, 70]                                 # the NOTIMP answer's SOA
    # translate_all: the AAAA records are replaced by the synthesised ones
    assert rrs(ask(p["default"], "dual.test.", tcp=tcp)) == ["dual.test. 60 IN AAAA 2001:db8::5"]
    r = ask(p["translate_all"], "dual.test.", tcp=tcp)
    assert rrs(r) == ["dual.test. 90 IN AAAA 64:ff9b::c000:205"] and flags(r) == {"QR", "RD"}
    # ... but never a name error
    r = ask(p["translate_all"], "nxdomain.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and rrs(r) == []


@TCP
def test_cnames_and_coredns_typify(served: tuple[ServeProcess, StubUpstream, dict[str, int]],
                                   tcp: bool) -> None:
    _, _, p = served
    # CNAME kept, the target's A translated with min(120, the AAAA answer's SOA TTL 45)
    r = ask(p["default"], "alias.test.", tcp=tcp)
    assert rrs(r) == ["alias.test. 300 IN CNAME target.test.",
                      "target.test. 45 IN AAAA 64:ff9b::c633:6407"]
    assert rrs(r, "authority") == ["test. 45 IN NS ns.test."]     # the A answer's
    # NXDOMAIN with a CNAME answer: not a name error for CoreDNS, so translated; the
    # synthesised answer is NOERROR with the CNAME (CoreDNS's SetReply)
    r = ask(p["default"], "cnamenx.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert rrs(r) == ["cnamenx.test. 300 IN CNAME gone.test."]
    # both questions fail: NOERROR, empty
    r = ask(p["default"], "bothfail.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and rrs(r) == [] and rrs(r, "authority") == []
    # an expired RRSIG in a DO answer: the NXDOMAIN is translated (Typify's OtherError)
    r = ask(p["default"], "expired.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN                  # without DO: a name error
    r = ask(p["default"], "expired.test.", tcp=tcp, do=True)
    assert r.rcode() == dns.rcode.NOERROR
    assert rrs(r) == ["expired.test. 60 IN AAAA 64:ff9b::c000:263"]
    assert r.ednsflags & dns.flags.DO


@TCP
def test_prefixes_served(served: tuple[ServeProcess, StubUpstream, dict[str, int]],
                         tcp: bool) -> None:
    """TestTo6's prefixes, end to end."""
    _, _, p = served
    for block, want in (("p32", ["64:0:c000:22a::", "64:0:c000:22b::"]),
                        ("p56", ["64:ff9b:0:c0:0:22a::", "64:ff9b:0:c0:0:22b::"]),
                        ("p64", ["64:ff9b::c0:2:2a00:0", "64:ff9b::c0:2:2b00:0"])):
        r = ask(p[block], "standard.test.", tcp=tcp)
        assert [x.split()[-1] for x in rrs(r)] == want, block


def test_truncated_to_the_client(served: tuple[ServeProcess, StubUpstream, dict[str, int]]
                                 ) -> None:
    """25 A records fit 512 bytes; as AAAA records they do not: the synthesised answer
    is cut to what the client can take (TC), and whole over TCP."""
    _, _, p = served
    r = ask(p["default"], "many.test.", payload=None)
    assert "TC" in flags(r) and 0 < len(r.answer) < 25
    assert r.edns < 0
    r = ask(p["default"], "many.test.", tcp=True)
    assert "TC" not in flags(r) and len(r.answer) == 25
    assert rrs(r)[0] == "many.test. 300 IN AAAA 64:ff9b::c000:201"
    r = ask(p["default"], "many.test.", payload=1232)
    assert "TC" not in flags(r) and len(r.answer) == 25


def test_case_and_id_echoed(served: tuple[ServeProcess, StubUpstream, dict[str, int]]) -> None:
    _, _, p = served
    r = ask(p["default"], "StanDard.TEST.")
    assert r.question[0].name.to_text() == "StanDard.TEST."
    assert [x.split()[-1] for x in rrs(r)] == ["64:ff9b::c000:22a", "64:ff9b::c000:22b"]


@TCP
def test_a_question_dropped(served: tuple[ServeProcess, StubUpstream, dict[str, int]],
                            tcp: bool) -> None:
    """acl (after dns64 in CoreDNS's order) drops A questions: the AAAA question gets
    through, the synthesis cannot be made: SERVFAIL, as CoreDNS's recovery answers."""
    _, _, p = served
    r = ask(p["drop_a"], "standard.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert rrs(ask(p["drop_a"], "aaaa.test.", tcp=tcp)) == ["aaaa.test. 60 IN AAAA ::1",
                                                             "aaaa.test. 5000 IN AAAA ::2"]


@TCP
def test_nsid_once(served: tuple[ServeProcess, StubUpstream, dict[str, int]], tcp: bool) -> None:
    """nsid (before dns64 in CoreDNS's order) puts one NSID option on the answer,
    synthesised or passed on."""
    _, _, p = served
    for name, want in (("standard.test.", "64:ff9b::c000:22a"), ("aaaa.test.", "::1")):
        q = dns.message.make_query(name, "AAAA", use_edns=True,
                                   options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
        r = (dns.query.tcp(q, V6, port=p["nsid"], timeout=5) if tcp else
             dns.query.udp(q, V6, port=p["nsid"], timeout=5))
        assert [o.to_text() for o in r.options if o.otype == dns.edns.NSID] == \
            ["NSID fastdns-test"], name
        assert want in [rd.to_text() for rrset in r.answer for rd in rrset], name


# --- answers the C engine gives: file, hosts, the cache -----------------------------------

ZONE = """$ORIGIN zone.test.
@ 3600 IN SOA ns.zone.test. admin.zone.test. 1 7200 900 1209600 300
@ 3600 IN NS ns
ns 3600 IN A 192.0.2.53
v4 120 IN A 192.0.2.10
v4 120 IN A 192.0.2.11
both 120 IN A 192.0.2.12
both 120 IN AAAA 2001:db8::12
alias 120 IN CNAME v4
"""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServeProcess, StubUpstream, dict[str, int]]]:
    tmp = tmp_path_factory.mktemp("dns64tables")
    (tmp / "zone.db").write_text(ZONE)
    (tmp / "extra.hosts").write_text("")
    ports = {"file": free_port(), "cache": free_port()}
    with StubUpstream(handler=_upstream_handler) as up:
        (tmp / "Corefile").write_text(f"""zone.test:{ports['file']} hosts.test:{ports['file']} {{
    bind {V4} {V6}
    dns64
    file zone.db zone.test
    hosts extra.hosts hosts.test {{
        192.0.2.7 v4.hosts.test
        ttl 900
    }}
}}
.:{ports['cache']} {{
    bind {V4} {V6}
    dns64
    forward . {up.hostport}
    cache 30
}}
""")
        with ServeProcess(tmp / "Corefile", workers=2, port=ports["file"],
                          probe=("v4.zone.test.", "A")) as srv:
            yield srv, up, ports


@TCP
def test_from_tables(tables: tuple[ServeProcess, StubUpstream, dict[str, int]], tcp: bool) -> None:
    _, _, p = tables
    port = p["file"]
    # the zone's NODATA (as an IPv4 client gets it) gives the SOA TTL
    plain = ask(port, "v4.zone.test.", tcp=tcp, host=V4)
    assert plain.rcode() == dns.rcode.NOERROR and not plain.answer
    soa_ttl = plain.authority[0].ttl
    r = ask(port, "v4.zone.test.", tcp=tcp)
    assert sorted(rrs(r)) == [f"v4.zone.test. {min(120, soa_ttl)} IN AAAA 64:ff9b::c000:20a",
                              f"v4.zone.test. {min(120, soa_ttl)} IN AAAA 64:ff9b::c000:20b"]
    assert flags(r) == {"QR", "RD"}
    # an AAAA record of the zone: as the zone answers it (AA kept)
    r = ask(port, "both.zone.test.", tcp=tcp)
    assert rrs(r) == ["both.zone.test. 120 IN AAAA 2001:db8::12"] and "AA" in flags(r)
    # a CNAME inside the zone: kept, its target translated
    r = ask(port, "alias.zone.test.", tcp=tcp)
    assert rrs(r)[0] == "alias.zone.test. 120 IN CNAME v4.zone.test."
    assert sorted(x.split()[-1] for x in rrs(r)[1:]) == ["64:ff9b::c000:20a", "64:ff9b::c000:20b"]
    # NXDOMAIN of the zone: as it is
    r = ask(port, "nope.zone.test.", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and "AA" in flags(r)
    # hosts has no SOA: TTL min(900, 600)
    r = ask(port, "v4.hosts.test.", tcp=tcp)
    assert rrs(r) == ["v4.hosts.test. 600 IN AAAA 64:ff9b::c000:207"]


def test_cache_holds_the_chains_answers(tables: tuple[ServeProcess, StubUpstream, dict[str, int]]
                                        ) -> None:
    """The cache (after dns64 in CoreDNS's order) stores the upstream's AAAA and A
    answers, never the synthesised one: the synthesis is made again from the cache for
    IPv6 clients, and an IPv4 client gets the cached NODATA."""
    _, up, p = tables
    port = p["cache"]
    r = ask(port, "standard.test.")
    assert [x.split()[-1] for x in rrs(r)] == ["64:ff9b::c000:22a", "64:ff9b::c000:22b"]
    asked = up.count("standard.test.")
    for host in (V6, V4, V6):
        for tcp in (False, True):
            r = ask(port, "standard.test.", tcp=tcp, host=host)
            if host == V6:
                assert [x.split()[-1] for x in rrs(r)] == ["64:ff9b::c000:22a",
                                                           "64:ff9b::c000:22b"]
                assert all(rrset.ttl <= 30 for rrset in r.answer)       # cache 30's cap
            else:
                assert rrs(r) == [] and r.authority[0].rdtype == dns.rdatatype.SOA
    assert up.count("standard.test.") == asked              # all from the cache


# --- kops's IPv6 Corefile ------------------------------------------------------------------

# As kops ships it (upup/models/cloudup/resources/addons/coredns.addons.k8s.io/
# k8s-1.12.yaml.template, IsIPv6Only), with only what a loopback test must change: the
# listen addresses, the probe and metrics ports, the API (a snapshot) and the upstream
# (the stub instead of /etc/resolv.conf).
KOPS_IPV6 = (_distro.KOPS_IPV6
             .replace(".:{port} {{\n", ".:{port} {{\n    bind 127.0.0.1 ::1\n")
             .replace("{resolv}", "{upstream}")
             .replace("    loadbalance\n}}", "    loadbalance\n    dns64\n}}"))
assert "dns64" in KOPS_IPV6 and "bind 127.0.0.1 ::1" in KOPS_IPV6


@pytest.fixture(scope="module")
def kops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, int]]:
    tmp = tmp_path_factory.mktemp("kops")
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    port, metrics = free_port(), free_port()
    with StubUpstream(handler=_upstream_handler) as up:
        (tmp / "Corefile").write_text(KOPS_IPV6.format(
            port=port, health=free_port(), ready=free_port(), metrics=metrics,
            upstream=up.hostport))
        with ServeProcess(tmp / "Corefile", workers=2, port=port,
                          probe=("api.prod.svc.cluster.local.", "A")) as srv:
            yield srv, metrics


@TCP
def test_kops_ipv6(kops: tuple[ServeProcess, int], tcp: bool) -> None:
    srv, _ = kops
    port = srv.port
    # a dual-stack Service: its own AAAA
    assert rrs(ask(port, "api.prod.svc.cluster.local.", tcp=tcp)) == \
        ["api.prod.svc.cluster.local. 30 IN AAAA fd00:96::10"]
    # IPv4-only endpoints of a headless Service: synthesised from the table's A answer,
    # the TTL at most the table's NODATA SOA's (what an IPv4 client gets)
    plain = ask(port, "db-0.db.prod.svc.cluster.local.", tcp=tcp, host=V4)
    assert plain.rcode() == dns.rcode.NOERROR and not plain.answer
    ttl = min(30, plain.authority[0].ttl)
    r = ask(port, "db-0.db.prod.svc.cluster.local.", tcp=tcp)
    assert rrs(r) == [f"db-0.db.prod.svc.cluster.local. {ttl} IN AAAA 64:ff9b::af4:301"]
    r = ask(port, "db.prod.svc.cluster.local.", tcp=tcp)
    assert sorted(x.split()[-1] for x in rrs(r)) == ["64:ff9b::af4:301", "64:ff9b::af4:302",
                                                     "64:ff9b::af4:303"]
    # a pod name of the IPv4 family (pods insecure)
    r = ask(port, "10-244-1-5.prod.pod.cluster.local.", tcp=tcp)
    assert [x.split()[-1] for x in rrs(r)] == ["64:ff9b::af4:105"]
    # NXDOMAIN in the cluster zone: as it is
    r = ask(port, "nope.prod.svc.cluster.local.", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and "AA" in flags(r)
    # outside the cluster: through forward (and cache; loadbalance shuffles cached answers)
    r = ask(port, "standard.test.", tcp=tcp)
    assert sorted(x.split()[-1] for x in rrs(r)) == ["64:ff9b::c000:22a", "64:ff9b::c000:22b"]
    # reverse names stay the kubernetes plugin's
    r = ask(port, "5.1.244.10.in-addr.arpa.", "PTR", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.answer


def test_kops_ipv6_big_headless(kops: tuple[ServeProcess, int]) -> None:
    """100 A records: the A answer over UDP is cut (TC), so is the synthesised one;
    over TCP all 100 are translated."""
    srv, _ = kops
    r = ask(srv.port, "big.default.svc.cluster.local.")
    assert "TC" in flags(r) and len(r.answer) < 100
    r = ask(srv.port, "big.default.svc.cluster.local.", tcp=True)
    assert "TC" not in flags(r) and len(r.answer) == 100
    assert all(rrset.rdtype == dns.rdatatype.AAAA and
               ipaddress.IPv6Address(rrset[0].address) in ipaddress.IPv6Network("64:ff9b::/96")
               for rrset in r.answer)


def test_kops_ipv6_metrics(kops: tuple[ServeProcess, int]) -> None:
    srv, metrics = kops
    ask(srv.port, "db-0.db.prod.svc.cluster.local.")
    text = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        if 'plugin="dns64"' in text:
            break
        time.sleep(0.2)
    lines = [ln for ln in text.splitlines()
             if ln.startswith("coredns_dns_responses_total") and 'plugin="dns64"' in ln]
    assert lines and any('rcode="NOERROR"' in ln for ln in lines)
