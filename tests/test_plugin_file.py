"""``file`` served by `fastdns serve`: CoreDNS's own test tables (plugin/file/lookup_test.go,
wildcard_test.go, delegation_test.go, ent_test.go, reload_test.go) with their zones copied
here, asked over UDP and TCP with dnspython; reload on a new SOA serial; a broken zone file
refused at start-up (naming the file and line) and ignored on reload."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from fastdns._testing.server import ServeProcess
from fastdns._testing.upstream import StubUpstream
from tests.forward_support import wait_until

NOERROR, NXDOMAIN, SERVFAIL, REFUSED = 0, 3, 2, 5

# plugin/file/lookup_test.go dbMiekNL
DB_MIEK_NL = """
$TTL    30M
$ORIGIN miek.nl.
@       IN      SOA     linode.atoom.net. miek.miek.nl. (
                             1282630057 ; Serial
                             4H         ; Refresh
                             1H         ; Retry
                             7D         ; Expire
                             4H )       ; Negative Cache TTL
                IN      NS      linode.atoom.net.
                IN      NS      ns-ext.nlnetlabs.nl.
                IN      NS      omval.tednet.nl.
                IN      NS      ext.ns.whyscream.net.

                IN      MX      1  aspmx.l.google.com.
                IN      MX      5  alt1.aspmx.l.google.com.
                IN      MX      5  alt2.aspmx.l.google.com.
                IN      MX      10 aspmx2.googlemail.com.
                IN      MX      10 aspmx3.googlemail.com.

\t\tIN      A       139.162.196.78
\t\tIN      AAAA    2a01:7e00::f03c:91ff:fef1:6735

a               IN      A       139.162.196.78
                IN      AAAA    2a01:7e00::f03c:91ff:fef1:6735
www             IN      CNAME   a
archive         IN      CNAME   a
*.x             IN      CNAME   www
b.x             IN      CNAME   a
*.y             IN      A       139.162.196.78
dname           IN      DNAME   x

srv\t\tIN\tSRV     10 10 8080 a.miek.nl.
mx\t\tIN\tMX      10 a.miek.nl.

txt     IN\tTXT     "v=spf1 a mx ~all"
caa     IN  CAA    0 issue letsencrypt.org
*.nodata    IN   A      139.162.196.79
ext-cname   IN   CNAME  example.com.
"""

MIEK_SOA = "miek.nl. 1800 SOA linode.atoom.net. miek.miek.nl. 1282630057 14400 3600 604800 14400"
MIEK_AUTH = ["miek.nl. 1800 NS ext.ns.whyscream.net.", "miek.nl. 1800 NS linode.atoom.net.",
             "miek.nl. 1800 NS ns-ext.nlnetlabs.nl.", "miek.nl. 1800 NS omval.tednet.nl."]
A_EXTRA = ["a.miek.nl. 1800 A 139.162.196.78",
           "a.miek.nl. 1800 AAAA 2a01:7e00::f03c:91ff:fef1:6735"]

# lookup_test.go dnsTestCases: (qname, qtype, rcode, answer, authority, additional)
LOOKUP_CASES = [
    ("www.miek.nl.", "A", NOERROR, ["a.miek.nl. 1800 A 139.162.196.78",
                                    "www.miek.nl. 1800 CNAME a.miek.nl."], MIEK_AUTH, []),
    ("www.miek.nl.", "AAAA", NOERROR, ["a.miek.nl. 1800 AAAA 2a01:7e00::f03c:91ff:fef1:6735",
                                       "www.miek.nl. 1800 CNAME a.miek.nl."], MIEK_AUTH, []),
    ("miek.nl.", "SOA", NOERROR, [MIEK_SOA], MIEK_AUTH, []),
    ("miek.nl.", "AAAA", NOERROR, ["miek.nl. 1800 AAAA 2a01:7e00::f03c:91ff:fef1:6735"],
     MIEK_AUTH, []),
    ("mIeK.NL.", "AAAA", NOERROR, ["miek.nl. 1800 AAAA 2a01:7e00::f03c:91ff:fef1:6735"],
     MIEK_AUTH, []),
    ("miek.nl.", "MX", NOERROR, ["miek.nl. 1800 MX 1 aspmx.l.google.com.",
                                 "miek.nl. 1800 MX 10 aspmx2.googlemail.com.",
                                 "miek.nl. 1800 MX 10 aspmx3.googlemail.com.",
                                 "miek.nl. 1800 MX 5 alt1.aspmx.l.google.com.",
                                 "miek.nl. 1800 MX 5 alt2.aspmx.l.google.com."], MIEK_AUTH, []),
    ("a.miek.nl.", "SRV", NOERROR, [], [MIEK_SOA], []),
    ("b.miek.nl.", "A", NXDOMAIN, [], [MIEK_SOA], []),
    ("srv.miek.nl.", "SRV", NOERROR, ["srv.miek.nl. 1800 SRV 10 10 8080 a.miek.nl."],
     MIEK_AUTH, A_EXTRA),
    ("mx.miek.nl.", "MX", NOERROR, ["mx.miek.nl. 1800 MX 10 a.miek.nl."], MIEK_AUTH, A_EXTRA),
    ("asterisk.x.miek.nl.", "CNAME", NOERROR, ["asterisk.x.miek.nl. 1800 CNAME www.miek.nl."],
     MIEK_AUTH, []),
    ("a.b.x.miek.nl.", "CNAME", NXDOMAIN, [], [MIEK_SOA], []),
    ("asterisk.y.miek.nl.", "A", NOERROR, ["asterisk.y.miek.nl. 1800 A 139.162.196.78"],
     MIEK_AUTH, []),
    # CoreDNS adds the CNAME it synthesises (foo.dname → foo.x); fastdns answers names
    # under a DNAME that have no records of their own with the DNAME alone (README)
    ("foo.dname.miek.nl.", "CNAME", NOERROR, ["dname.miek.nl. 1800 DNAME x.miek.nl."],
     MIEK_AUTH, []),
    # CoreDNS: SERVFAIL (its test has no upstream for example.com); fastdns: the CNAME
    # alone, NOERROR (targets outside the zone are not chased: README)
    ("ext-cname.miek.nl.", "A", NOERROR, ["ext-cname.miek.nl. 1800 CNAME example.com."],
     MIEK_AUTH, []),
    ("txt.miek.nl.", "TXT", NOERROR, ['txt.miek.nl. 1800 TXT "v=spf1 a mx ~all"'],
     MIEK_AUTH, []),
    ("caa.miek.nl.", "CAA", NOERROR, ['caa.miek.nl. 1800 CAA 0 issue "letsencrypt.org"'],
     MIEK_AUTH, []),
    # TestLookUpNoDataResult
    ("a.miek.nl.", "MX", NOERROR, [], [MIEK_SOA], []),
    ("wildcard.nodata.miek.nl.", "MX", NOERROR, [], [MIEK_SOA], []),
    # more of the zone, CoreDNS's answers (lookup.go)
    ("x.miek.nl.", "A", NOERROR, [], [MIEK_SOA], []),                   # empty non-terminal
    ("b.x.miek.nl.", "A", NOERROR, ["b.x.miek.nl. 1800 CNAME a.miek.nl.",
                                    "a.miek.nl. 1800 A 139.162.196.78"], MIEK_AUTH, []),
    ("long.name.x.miek.nl.", "A", NOERROR, [    # wildcard CNAME chased: *.x → www → a
        "long.name.x.miek.nl. 1800 CNAME www.miek.nl.", "www.miek.nl. 1800 CNAME a.miek.nl.",
        "a.miek.nl. 1800 A 139.162.196.78"], MIEK_AUTH, []),
    ("miek.nl.", "NS", NOERROR, [r.replace("1800 NS", "1800 NS") for r in MIEK_AUTH], [], []),
    ("dname.miek.nl.", "DNAME", NOERROR, ["dname.miek.nl. 1800 DNAME x.miek.nl."],
     MIEK_AUTH, []),
    ("miek.nl.", "ANY", NOERROR, [], [MIEK_SOA], []),                   # elem.Type(ANY): none
]

# delegation_test.go dbMiekNLDelegation
DB_MIEK_NL_DELEGATION = """
$TTL    30M
$ORIGIN miek.nl.
@       IN      SOA     linode.atoom.net. miek.miek.nl. (
                             1282630057 ; Serial
                             4H         ; Refresh
                             1H         ; Retry
                             7D         ; Expire
                             4H )       ; Negative Cache TTL
                IN      NS      linode.atoom.net.
                IN      NS      ns-ext.nlnetlabs.nl.
                IN      NS      omval.tednet.nl.
                IN      NS      ext.ns.whyscream.net.

                IN      MX      1  aspmx.l.google.com.
                IN      MX      5  alt1.aspmx.l.google.com.
                IN      MX      5  alt2.aspmx.l.google.com.
                IN      MX      10 aspmx2.googlemail.com.
                IN      MX      10 aspmx3.googlemail.com.

delegated\tIN\tNS      a.delegated
\t\tIN\tNS      ns-ext.nlnetlabs.nl.

a.delegated     IN      TXT     "obscured"
                IN      A       139.162.196.78
                IN      AAAA    2a01:7e00::f03c:91ff:fef1:6735

a               IN      A       139.162.196.78
                IN      AAAA    2a01:7e00::f03c:91ff:fef1:6735
www             IN      CNAME   a
archive         IN      CNAME   a
"""

REFERRAL = ["delegated.miek.nl. 1800 NS a.delegated.miek.nl.",
            "delegated.miek.nl. 1800 NS ns-ext.nlnetlabs.nl."]
GLUE = ["a.delegated.miek.nl. 1800 A 139.162.196.78",
        "a.delegated.miek.nl. 1800 AAAA 2a01:7e00::f03c:91ff:fef1:6735"]
DELEGATION_CASES = [
    ("a.delegated.miek.nl.", "TXT", NOERROR, [], REFERRAL, GLUE),
    ("delegated.miek.nl.", "NS", NOERROR, [], REFERRAL, GLUE),
    ("foo.delegated.miek.nl.", "A", NOERROR, [], REFERRAL, GLUE),
    ("foo.delegated.miek.nl.", "TXT", NOERROR, [], REFERRAL, GLUE),
    ("foo.delegated.miek.nl.", "SOA", NOERROR, [], REFERRAL, GLUE),
    ("deep.er.foo.delegated.miek.nl.", "AAAA", NOERROR, [], REFERRAL, GLUE),
    ("miek.nl.", "SOA", NOERROR, [MIEK_SOA], MIEK_AUTH, []),
    ("miek.nl.", "AAAA", NOERROR, [], [MIEK_SOA], []),
    ("delegated.miek.nl.", "DS", NOERROR, [], [MIEK_SOA], []),       # DS at the cut: the parent's
]

# wildcard_test.go exampleOrg, apexWildcard, doubleWildcard, closerENTWildcard,
# emptyNonTerminalWildcard, dbWildcardAdditional; ent_test.go (its records, unsigned)
EXAMPLE_ORG = """; example.org test file
$TTL 3600
example.org.\t\tIN\tSOA\tsns.dns.icann.org. noc.dns.icann.org. 2015082541 7200 3600 1209600 3600
example.org.\t\tIN\tNS\tb.iana-servers.net.
example.org.\t\tIN\tNS\ta.iana-servers.net.
example.org.\t\tIN\tA\t127.0.0.1
example.org.\t\tIN\tA\t127.0.0.2
*.w.example.org.        IN      TXT     "Wildcard"
a.b.c.w.example.org.    IN      TXT     "Not a wildcard"
*.c.example.org.        IN      TXT     "c Wildcard"
*.d.example.org.        IN      CNAME   alias.example.org.
alias.example.org.      IN      TXT     "Wildcard CNAME expansion"
"""
EXAMPLE_AUTH = ["example.org. 3600 NS a.iana-servers.net.", "example.org. 3600 NS b.iana-servers.net."]
EXAMPLE_CASES = [
    ("wild.w.example.org.", "TXT", NOERROR, ['wild.w.example.org. 3600 TXT "Wildcard"'],
     EXAMPLE_AUTH, []),
    ("wild.c.example.org.", "TXT", NOERROR, ['wild.c.example.org. 3600 TXT "c Wildcard"'],
     EXAMPLE_AUTH, []),
    ("wild.d.example.org.", "TXT", NOERROR, [
        'alias.example.org. 3600 TXT "Wildcard CNAME expansion"',
        "wild.d.example.org. 3600 CNAME alias.example.org."], EXAMPLE_AUTH, []),
    ("alias.example.org.", "TXT", NOERROR, ['alias.example.org. 3600 TXT "Wildcard CNAME expansion"'],
     EXAMPLE_AUTH, []),
    # a long label: the wildcard's answer is written behind any question
    ("a-much-longer-label-than-the-star.w.example.org.", "TXT", NOERROR,
     ['a-much-longer-label-than-the-star.w.example.org. 3600 TXT "Wildcard"'], EXAMPLE_AUTH, []),
]

APEX_WILDCARD = """; example.org test file with wildcard at apex
$TTL 3600
example.org.\t\tIN\tSOA\tsns.dns.icann.org. noc.dns.icann.org. 2015082541 7200 3600 1209600 3600
example.org.\t\tIN\tNS\tb.iana-servers.net.
*.example.org.          IN      A       127.0.0.53
*.intern.example.org.   IN      A       127.0.1.52
foo.example.org.        IN      A       127.0.0.54
"""
ONE_NS = ["example.org. 3600 NS b.iana-servers.net."]
APEX_CASES = [   # TestLookupApexWildcard + TestLookupMultiWildcard (doubleWildcard)
    ("foo.example.org.", "A", NOERROR, ["foo.example.org. 3600 A 127.0.0.54"], ONE_NS, []),
    ("bar.example.org.", "A", NOERROR, ["bar.example.org. 3600 A 127.0.0.53"], ONE_NS, []),
    ("bar.intern.example.org.", "A", NOERROR, ["bar.intern.example.org. 3600 A 127.0.1.52"],
     ONE_NS, []),
]

CLOSER_ENT = """; example.org test file with a wildcard and a deeper empty non-terminal
$TTL 3600
example.org.             IN     SOA     sns.dns.icann.org. noc.dns.icann.org. 2015082541 7200 3600 1209600 3600
example.org.             IN     NS      b.iana-servers.net.
*.example.org.           IN     A       127.0.0.53
real.deeper.example.org. IN     A       127.0.0.54
"""
CLOSER_SOA = ("example.org. 3600 SOA sns.dns.icann.org. noc.dns.icann.org. 2015082541 7200 3600 "
              "1209600 3600")
CLOSER_CASES = [
    ("nonexistent.deeper.example.org.", "A", NXDOMAIN, [], [CLOSER_SOA], []),
    ("nonexistent.example.org.", "A", NOERROR, ["nonexistent.example.org. 3600 A 127.0.0.53"],
     ONE_NS, []),
]

ENT_WILDCARD = """; example.org test file with an empty non-terminal wildcard
$TTL 3600
example.org.             IN     SOA     ns.example.org. hostmaster.example.org. 1 7200 3600 1209600 3600
example.org.             IN     NS      ns.example.org.
f.*.e.example.org.       IN     A       192.0.2.1
t.e.example.org.         IN     A       192.0.2.2
real.deep.e.example.org. IN     A       192.0.2.3
*.ordinary.example.org.  IN     A       192.0.2.4
"""
EW_SOA = "example.org. 3600 SOA ns.example.org. hostmaster.example.org. 1 7200 3600 1209600 3600"
EW_NS = ["example.org. 3600 NS ns.example.org."]
ENT_WILDCARD_CASES = [
    ("something.e.example.org.", "A", NOERROR, [], [EW_SOA], []),
    ("something.e.example.org.", "AAAA", NOERROR, [], [EW_SOA], []),
    ("something.somewhere.e.example.org.", "A", NOERROR, [], [EW_SOA], []),
    ("f.*.e.example.org.", "A", NOERROR, ["f.*.e.example.org. 3600 A 192.0.2.1"], EW_NS, []),
    ("missing.*.e.example.org.", "A", NXDOMAIN, [], [EW_SOA], []),
    ("missing.deep.e.example.org.", "A", NXDOMAIN, [], [EW_SOA], []),
    ("something.ordinary.example.org.", "A", NOERROR,
     ["something.ordinary.example.org. 3600 A 192.0.2.4"], EW_NS, []),
]

WILDCARD_ADDITIONAL = """
$TTL 30M
$ORIGIN example.org.
@\tIN SOA\tns.example.org. admin.example.org. 2024010100 14400 3600 604800 14400
\tIN NS\tns.example.org.
ns\tIN A\t192.0.2.1
mail\tIN A\t192.0.2.10
\tIN AAAA\t2001:db8::10
*.wild\tIN MX\t10 mail.example.org.
"""
WA_CASES = [
    ("foo.wild.example.org.", "MX", NOERROR, ["foo.wild.example.org. 1800 MX 10 mail.example.org."],
     ["example.org. 1800 NS ns.example.org."],
     ["mail.example.org. 1800 A 192.0.2.10", "mail.example.org. 1800 AAAA 2001:db8::10"]),
]

DB_MIEK_ENT = """
miek.nl.\t\t1800\tIN SOA\tlinode.atoom.net. miek.miek.nl. 1282630057 14400 3600 604800 14400
\t\t\t1800\tNS\tlinode.atoom.net.
a.miek.nl.\t\t1800\tIN A\t127.0.0.1
a.b.c.miek.nl.\t\t1800\tIN A\t127.0.0.1
"""
ENT_CASES = [
    ("b.c.miek.nl.", "A", NOERROR, [], [MIEK_SOA], []),
    ("c.miek.nl.", "A", NOERROR, [], [MIEK_SOA], []),
    ("x.b.c.miek.nl.", "A", NXDOMAIN, [], [MIEK_SOA], []),
]

def rrs(section: list) -> list[str]:
    out = []
    for rrset in section:
        for rd in rrset:
            out.append(f"{rrset.name.to_text()} {rrset.ttl} "
                       f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}".lower())
    return sorted(out)


def norm(lines: list[str]) -> list[str]:
    return sorted(" ".join(x.split()).lower() for x in lines)


def ask(srv: ServeProcess, qname: str, qtype: str, tcp: bool = False,
        port: int | None = None) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype)
    if tcp:
        return dns.query.tcp(q, srv.host, port=port or srv.port, timeout=5)
    return dns.query.udp(q, srv.host, port=port or srv.port, timeout=5)


# one server, one block per zone file (each zone's origin is its block's zone)
FILES = {
    "miek.nl.": ("db.miek.nl", DB_MIEK_NL),
    "delegated.nl.": ("db.delegation", DB_MIEK_NL_DELEGATION.replace("$ORIGIN miek.nl.", "")),
    "example.org.": ("db.example.org", EXAMPLE_ORG),
    "apex.test.": ("db.apex", APEX_WILDCARD.replace("example.org.", "apex.test.")),
    "closer.test.": ("db.closer", CLOSER_ENT.replace("example.org.", "closer.test.")),
    "entwild.test.": ("db.entwild", ENT_WILDCARD.replace("example.org.", "entwild.test.")),
    "wildadd.test.": ("db.wildadd", WILDCARD_ADDITIONAL.replace("example.org.", "wildadd.test.")),
    "ent.nl.": ("db.ent", DB_MIEK_ENT.replace("miek.miek.nl.", "@@").replace("miek.nl.", "ent.nl.")
                .replace("@@", "miek.miek.nl.")),
}


def _rename(cases: list, old: str, new: str) -> list:
    def r(x: str) -> str:       # the SOA's mailbox (miek.miek.nl.) stays as it is
        return x.replace("miek." + old, "@@").replace(old, new).replace("@@", "miek." + old)
    return [(r(q), t, rc, [r(a) for a in an], [r(a) for a in ns], [r(a) for a in ex])
            for q, t, rc, an, ns, ex in cases]


ALL_CASES = (
    [("lookup", *c) for c in LOOKUP_CASES]
    + [("delegation", *c) for c in _rename(DELEGATION_CASES, "miek.nl.", "delegated.nl.")]
    + [("wildcard", *c) for c in EXAMPLE_CASES]
    + [("apex", *c) for c in _rename(APEX_CASES, "example.org.", "apex.test.")]
    + [("closer", *c) for c in _rename(CLOSER_CASES, "example.org.", "closer.test.")]
    + [("entwild", *c) for c in _rename(ENT_WILDCARD_CASES, "example.org.", "entwild.test.")]
    + [("wildadd", *c) for c in _rename(WA_CASES, "example.org.", "wildadd.test.")]
    + [("ent", *c) for c in _rename(ENT_CASES, "miek.nl.", "ent.nl.")]
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("file")
    blocks = []
    for zone, (fname, text) in FILES.items():
        (tmp / fname).write_text(text)
        blocks.append(f"{zone} {{\n    file {fname}\n}}\n")
    (tmp / "Corefile").write_text("".join(blocks))
    with ServeProcess(tmp / "Corefile", workers=2, probe=("miek.nl.", "SOA")) as srv:
        yield srv


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("table,qname,qtype,rcode,answer,ns,extra", ALL_CASES,
                         ids=[f"{c[0]}-{c[1]}{c[2]}" for c in ALL_CASES])
def test_coredns_tables(served: ServeProcess, table: str, qname: str, qtype: str, rcode: int,
                        answer: list[str], ns: list[str], extra: list[str], tcp: bool) -> None:
    r = ask(served, qname, qtype, tcp)
    assert r.rcode() == rcode
    assert rrs(r.answer) == norm(answer)
    assert rrs(r.authority) == norm(ns)
    assert rrs(r.additional) == norm(extra)
    referral = not answer and ns and all(" ns " in x.lower() for x in ns)
    assert bool(r.flags & dns.flags.AA) == (not referral), "AA except on referrals"


def test_question_echoed_and_wildcard_owner_case(served: ServeProcess) -> None:
    r = ask(served, "Some.Long.Name.X.miek.nl.", "A")
    assert r.question[0].name.to_text() == "Some.Long.Name.X.miek.nl."
    assert r.answer[0].name == dns.name.from_text("some.long.name.x.miek.nl.")


def test_axfr_refused_and_other_names(served: ServeProcess) -> None:
    q = dns.message.make_query("miek.nl.", "AXFR")
    r = dns.query.tcp(q, served.host, port=served.port, timeout=5)
    assert r.rcode() == REFUSED
    # a name no block serves
    assert ask(served, "example.com.", "A").rcode() == REFUSED


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastdns", *args], capture_output=True,
                          text=True, timeout=60)


def test_broken_zone_refused_at_startup(tmp_path: Path) -> None:
    (tmp_path / "db.bad").write_text("$ORIGIN bad.test.\n@ 3600 IN SOA ns. h. 1 2 3 4 5\n"
                                     "www 3600 IN A 10.0.0.1\nbroken 3600 IN A not-an-ip\n")
    (tmp_path / "Corefile").write_text("bad.test {\n    file db.bad\n}\n")
    out = _cli("check-config", str(tmp_path / "Corefile"))
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    assert "db.bad:4:" in text, text
    assert "Corefile:2" in text, text
    (tmp_path / "db.nosoa").write_text("$ORIGIN bad.test.\nwww 3600 IN A 10.0.0.1\n")
    (tmp_path / "Corefile").write_text("bad.test {\n    file db.nosoa\n}\n")
    out = _cli("check-config", str(tmp_path / "Corefile"))
    assert out.returncode != 0 and "no SOA" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    # reload 0 and no file at all: an error too (CoreDNS: fatal without reload)
    (tmp_path / "Corefile").write_text("bad.test {\n    file db.missing {\n        reload 0\n"
                                       "    }\n}\n")
    out = _cli("check-config", str(tmp_path / "Corefile"))
    assert out.returncode != 0 and "db.missing" in out.stdout + out.stderr


RELOAD_ZONE = """$ORIGIN reload.test.
$TTL 300
@   IN SOA ns.reload.test. hostmaster.reload.test. {serial} 7200 3600 1209600 300
    IN NS  ns.reload.test.
ns  IN A   10.0.0.53
www IN A   {addr}
{extra}
"""


def test_reload_on_serial_change_and_broken_file(tmp_path: Path) -> None:
    db = tmp_path / "db.reload"
    db.write_text(RELOAD_ZONE.format(serial=1, addr="10.0.0.1", extra=""))
    with StubUpstream() as up:
        (tmp_path / "Corefile").write_text(
            f"reload.test {{\n    file db.reload {{\n        reload 200ms\n"
            f"        fallthrough\n    }}\n    forward . {up.address[0]}:{up.address[1]}\n}}\n")
        with ServeProcess(tmp_path / "Corefile", workers=2,
                          probe=("www.reload.test.", "A")) as srv:
            def addr(name: str = "www.reload.test.") -> list[str]:
                r = ask(srv, name, "A")
                return [rd.to_text() for rrset in r.answer for rd in rrset]

            assert addr() == ["10.0.0.1"]
            # same serial: not reloaded (CoreDNS compares the SOA serial)
            db.write_text(RELOAD_ZONE.format(serial=1, addr="10.0.0.2", extra=""))
            time.sleep(1.0)
            assert addr() == ["10.0.0.1"]
            # a new serial: reloaded, a new name and the new SOA in negatives
            db.write_text(RELOAD_ZONE.format(serial=2, addr="10.0.0.3",
                                             extra="new IN A 10.0.0.4"))
            wait_until(lambda: addr() == ["10.0.0.3"], timeout=10)
            assert addr("new.reload.test.") == ["10.0.0.4"]
            r = ask(srv, "www.reload.test.", "TXT")
            assert r.authority[0][0].serial == 2
            # a broken file: logged, the old answers stay
            db.write_text(RELOAD_ZONE.format(serial=3, addr="10.0.0.5",
                                             extra="bad IN A not-an-address"))
            time.sleep(1.0)
            assert addr() == ["10.0.0.3"]
            # fallthrough: an NXDOMAIN goes on to forward (the stub answers)
            n = up.count("nope.reload.test.")
            ask(srv, "nope.reload.test.", "A")
            assert up.count("nope.reload.test.") == n + 1


def test_fallthrough_zones(tmp_path: Path) -> None:
    """lookup_test.go TestLookupFallthrough: NXDOMAIN and empty non-terminals fall
    through (to an upstream here; CoreDNS's test has an error handler: SERVFAIL)."""
    (tmp_path / "db.miek.nl").write_text(DB_MIEK_NL)
    with StubUpstream() as up:
        (tmp_path / "Corefile").write_text(
            f"miek.nl {{\n    file db.miek.nl {{\n        fallthrough x.miek.nl a.miek.nl\n"
            f"    }}\n    forward . {up.address[0]}:{up.address[1]}\n}}\n")
        with ServeProcess(tmp_path / "Corefile", workers=1, probe=("miek.nl.", "SOA")) as srv:
            assert ask(srv, "a.miek.nl.", "A").rcode() == NOERROR
            assert ask(srv, "doesnotexist.miek.nl.", "A").rcode() == NXDOMAIN   # not in the zones
            n = up.count("passthrough.a.miek.nl.")
            ask(srv, "passthrough.a.miek.nl.", "A")
            assert up.count("passthrough.a.miek.nl.") == n + 1
            n = up.count("x.miek.nl.")
            ask(srv, "x.miek.nl.", "A")                  # an empty non-terminal: falls through
            assert up.count("x.miek.nl.") == n + 1
            r = ask(srv, "wildcard.x.miek.nl.", "A")     # the wildcard answers
            assert r.rcode() == NOERROR and r.answer
