"""``template`` served by `fastdns serve`: CoreDNS's own test tables
(plugin/template/template_test.go: TestHandler and TestMultiSection), AKS's default
Corefile templates beside ``kubernetes`` and ``forward``, and a template inside
``cluster.local`` whose fallthrough resumes the chain in C at the kubernetes table.
Queried over UDP and TCP with dnspython."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from fastdns._testing.server import ServeProcess, free_port
from fastdns._testing.upstream import StubUpstream
from tests.server_support import cluster_objects, write_snapshot

IPA = r'"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$"'

# template_test.go TestHandler's templates (all: zone ".", fallthrough), by case name.
# Not here, because fastdns refuses them when it loads the Corefile (see
# tests/test_config_template.py): CNAMEWithoutUpstream (a
# CNAME answer to A queries), BrokenTemplate (index .Match 2 of a regex without groups:
# BrokenTemplateRuntime below is the same failure with a second regex that has the
# groups) and mdMatch (metadata: fastdns has no metadata plugin).
CASES: dict[str, str] = {
    "RcodeServFail": """template ANY ANY {
        match .*
        rcode SERVFAIL
        fallthrough
    }""",
    "ExampleDomainA": f"""template ANY ANY {{
        match {IPA}
        answer "{{{{ .Name }}}} 60 IN A 10.{{{{ .Group.b }}}}.{{{{ .Group.c }}}}.{{{{ .Group.d }}}}"
        fallthrough
    }}""",
    "ExampleDomainAParseInt": """template ANY ANY {
        match "^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
        answer "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
        fallthrough
    }""",
    "ExampleDomainANS": f"""template ANY ANY {{
        match {IPA}
        answer "{{{{ .Name }}}} 60 IN A 10.{{{{ .Group.b }}}}.{{{{ .Group.c }}}}.{{{{ .Group.d }}}}"
        additional "ns0.example. IN A 203.0.113.8"
        authority "example. IN NS ns0.example.com."
        fallthrough
    }}""",
    "ExampleDomainMX": f"""template ANY ANY {{
        match {IPA}
        answer "{{{{ .Name }}}} 60 MX 10 {{{{ .Name }}}}"
        additional "{{{{ .Name }}}} 60 IN A 10.{{{{ .Group.b }}}}.{{{{ .Group.c }}}}.{{{{ .Group.d }}}}"
        fallthrough
    }}""",
    "InvalidDomain": """template ANY ANY {
        match "[.]invalid[.]$"
        rcode NXDOMAIN
        answer "invalid. 60 {{ .Class }} SOA a.invalid. b.invalid. (1 60 60 60 60)"
        fallthrough
    }""",
    "BrokenTemplateRuntime": """template ANY ANY {
        match "^(x)-(y)[.]example[.]$" "[.]example[.]$"
        answer "{{ .Name }} 60 IN TXT \\"{{ index .Match 2 }}\\""
        fallthrough
    }""",
    "BrokenParseInt": """template ANY ANY {
        match "[.]example[.]$"
        answer "{{ .Name }} 60 IN TXT \\"{{ parseInt \\"gg\\" 16 8 }}\\""
        fallthrough
    }""",
    "NonRR": """template ANY ANY {
        match "[.]example[.]$"
        answer "{{ .Name }}"
        fallthrough
    }""",
    "NonRRAdditional": """template ANY ANY {
        match "[.]example[.]$"
        additional "{{ .Name }}"
        fallthrough
    }""",
    "NonRRAuthority": """template ANY ANY {
        match "[.]example[.]$"
        authority "{{ .Name }}"
        fallthrough
    }""",
    "MdMissing": f"""template ANY ANY {{
        match {IPA}
        answer "{{{{ .Meta \\"foofoo\\" }}}}{{{{ .Name }}}} 60 IN A 10.{{{{ .Group.b }}}}.{{{{ .Group.c }}}}.{{{{ .Group.d }}}}"
        fallthrough
    }}""",
    "EDE": """template ANY ANY {
        match .*
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked due to RFC2606"
        fallthrough
    }""",
    # fastdns's own: truncation to the client's UDP size, and what the data fields print
    "Big": "template IN TXT {\n        answer "
           + " ".join(f'"big.test. 60 IN TXT \\"{c * 150}\\""' for c in "abcdefghijkl")
           + "\n    }",
    "Fields": """template ANY ANY {
        match "^(?P<host>[a-z]+)[.](?P<rest>.*)$"
        answer "{{ .Name }} 60 IN TXT \\"{{ .Zone }}\\" \\"{{ .Class }}\\" \\"{{ .Type }}\\" \\"{{ index .Match 1 }}\\" \\"{{ .Group.rest }}\\" \\"{{ index .Group \\"host\\" }}\\" \\"{{ .Question.Name }}\\" \\"{{ .Question.Qtype }}\\" \\"{{- /* trimmed */ -}} {{ .Regex }}\\""
        fallthrough
    }""",
}

# TestMultiSection, in a "." block: the two templates CoreDNS gives its server block
# key "test." name the zone "test" here
MULTI = """
    template IN A test {
        rcode REFUSED
    }
    template IN TXT test {
        match "$^"
        rcode SERVFAIL
        fallthrough
    }
    template CH TXT coredns.invalid {
        answer "{{ .Name }} 60 CH TXT \\"test\\""
    }
    template IN A example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN MX example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }
"""


def ask(port: int, qname: str, qtype: str = "A", tcp: bool = False, qclass: str = "IN",
        payload: int | None = 1232) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, qclass, use_edns=payload is not None,
                               payload=payload or 0)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=5)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=5, ignore_trailing=True)


def texts(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(f"{rrset.name} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
                  f"{dns.rdatatype.to_text(rrset.rdtype)} {rd}"
                  for rrset in getattr(msg, section) for rd in rrset)


@pytest.fixture(scope="module")
def coredns(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ServeProcess, StubUpstream, dict[str, int]]]:
    tmp = tmp_path_factory.mktemp("template")
    ports: dict[str, int] = {}
    with StubUpstream(records={("fallthrough.test.", "A"): ["192.0.2.1"]}) as up:
        blocks = [f". {{\n{MULTI}\n    forward . {up.hostport}\n}}\n"]
        for name, body in CASES.items():
            ports[name] = port = free_port()
            blocks.append(f".:{port} {{\n    {body}\n    forward . {up.hostport}\n}}\n")
        (tmp / "Corefile").write_text("".join(blocks))
        with ServeProcess(tmp / "Corefile", workers=2, probe=("some.test.", "A")) as srv:
            yield srv, up, ports


@pytest.mark.parametrize("tcp", [False, True])
def test_coredns_handler_table(coredns: tuple[ServeProcess, StubUpstream, dict[str, int]],
                               tcp: bool) -> None:
    srv, up, p = coredns
    # RcodeServFail: a bare SERVFAIL (CoreDNS writes no message of its own)
    r = ask(p["RcodeServFail"], "test.invalid.", "A", tcp)
    assert r.rcode() == dns.rcode.SERVFAIL and not r.answer and not r.flags & dns.flags.AA
    # ExampleDomainNameMismatch: the regex misses, fallthrough: the next plugin (forward)
    before = up.count("test.invalid.")
    r = ask(p["ExampleDomainA"], "test.invalid.", "A", tcp)
    assert up.count("test.invalid.") == before + 1
    # ExampleDomainMatch
    r = ask(p["ExampleDomainA"], "ip-10-95-12-8.example.", "A", tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r) == ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    # ExampleDomainMatchHexIp
    r = ask(p["ExampleDomainAParseInt"], "ip0a5f0c09.example.", "A", tcp)
    assert texts(r) == ["ip0a5f0c09.example. 60 IN A 10.95.12.9"]
    # ExampleDomainMXMatch: one MX, one additional A
    r = ask(p["ExampleDomainMX"], "ip-10-95-12-8.example.", "MX", tcp)
    assert texts(r) == ["ip-10-95-12-8.example. 60 IN MX 10 ip-10-95-12-8.example."]
    assert texts(r, "additional") == ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    # ExampleDomainANSMatch: answer, additional and authority (TTL 3600 when none written)
    r = ask(p["ExampleDomainANS"], "ip-10-95-12-8.example.", "A", tcp)
    assert texts(r) == ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    assert texts(r, "additional") == ["ns0.example. 3600 IN A 203.0.113.8"]
    assert texts(r, "authority") == ["example. 3600 IN NS ns0.example.com."]
    # ExampleInvalidNXDOMAIN: NXDOMAIN with the SOA in the answer section, as written
    r = ask(p["InvalidDomain"], "test.invalid.", "MX", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert texts(r) == ["invalid. 60 IN SOA a.invalid. b.invalid. 1 60 60 60 60"]
    # BrokenTemplate / BrokenParseIntTemplate / NonRR*: SERVFAIL
    for case in ("BrokenTemplateRuntime", "BrokenParseInt", "NonRR", "NonRRAdditional",
                 "NonRRAuthority"):
        r = ask(p[case], "test.example.", "ANY", tcp)
        assert r.rcode() == dns.rcode.SERVFAIL, case
    r = ask(p["BrokenTemplateRuntime"], "x-y.example.", "TXT", tcp)   # the regex with groups
    assert texts(r) == ['x-y.example. 60 IN TXT "y"']
    # mdMissing: .Meta of an absent name is ""
    r = ask(p["MdMissing"], "ip-10-95-12-8.example.", "A", tcp)
    assert texts(r) == ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    # EDNS error: NXDOMAIN, the SOA in authority, EDE 21 with its text
    r = ask(p["EDE"], "test.invalid.", "A", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert texts(r, "authority") == ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. "
                                     "1 60 60 60 60"]
    ede = [o for o in r.options if isinstance(o, dns.edns.EDEOption)]
    assert [(o.code, o.text) for o in ede] == [(21, "Blocked due to RFC2606")]


def test_ede_needs_edns_in_the_query(coredns: tuple[ServeProcess, StubUpstream, dict[str, int]]
                                     ) -> None:
    _, _, p = coredns
    r = ask(p["EDE"], "test.invalid.", "A", payload=None)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.edns < 0 and len(r.authority) == 1


@pytest.mark.parametrize("tcp", [False, True])
def test_coredns_multi_section(coredns: tuple[ServeProcess, StubUpstream, dict[str, int]],
                               tcp: bool) -> None:
    srv, up, _ = coredns
    assert ask(srv.port, "some.test.", "A", tcp).rcode() == dns.rcode.REFUSED
    before = up.count("some.test.")
    ask(srv.port, "some.test.", "TXT", tcp)              # fallthrough: reaches forward
    assert up.count("some.test.") == before + 1
    r = ask(srv.port, "coredns.invalid.", "TXT", tcp, "CH")
    assert r.rcode() == dns.rcode.NOERROR and texts(r) == ['coredns.invalid. 60 CH TXT "test"']
    r = ask(srv.port, "ip-10-11-12-13.example.", "A", tcp)
    assert texts(r) == ["ip-10-11-12-13.example. 60 IN A 10.11.12.13"]
    r = ask(srv.port, "ip-10-11-12-13.example.", "MX", tcp)
    assert texts(r) == ["ip-10-11-12-13.example. 60 IN MX 10 ip-10-11-12-13.example."]
    assert len(r.additional) == 1
    before = up.count("something.example.")
    ask(srv.port, "something.example.", "A", tcp)         # A falls through
    assert up.count("something.example.") == before + 1
    r = ask(srv.port, "something.example.", "MX", tcp)    # MX does not: SERVFAIL
    assert r.rcode() == dns.rcode.SERVFAIL and up.count("something.example.") == before + 1


def test_names_and_classes_outside_every_template(
        coredns: tuple[ServeProcess, StubUpstream, dict[str, int]]) -> None:
    srv, up, _ = coredns
    r = ask(srv.port, "fallthrough.test.", "A")           # under test. but IN A: REFUSED
    assert r.rcode() == dns.rcode.REFUSED
    before = up.count("www.elsewhere.org.")
    ask(srv.port, "www.elsewhere.org.", "A")              # no template zone: C goes on
    assert up.count("www.elsewhere.org.") == before + 1
    before = up.count("coredns.invalid.")
    ask(srv.port, "coredns.invalid.", "TXT")              # class IN: not the CH template
    assert up.count("coredns.invalid.") == before + 1
    # a query for type ANY matches the A template; .Type is then the template's
    r = ask(srv.port, "IP-10-1-2-3.Example.", "ANY")
    assert r.question[0].name.to_text() == "IP-10-1-2-3.Example."   # echoed as asked
    # .Name is lower-cased (the owner may come out as a compression pointer to the
    # question, so in the question's case: names compare case-insensitively)
    assert [t.lower() for t in texts(r)] == ["ip-10-1-2-3.example. 60 in a 10.1.2.3"]


def test_data_fields(coredns: tuple[ServeProcess, StubUpstream, dict[str, int]]) -> None:
    _, _, p = coredns
    r = ask(p["Fields"], "Host.Sub.Example.", "MX")
    assert [rd.strings for rrset in r.answer for rd in rrset] == [(
        b".", b"IN", b"MX", b"host", b"sub.example.", b"host", b"Host.Sub.Example.", b"15",
        b"^(?P<host>[a-z]+)[.](?P<rest>.*)$")]


@pytest.mark.parametrize("payload", [None, 1232])
def test_truncated_to_the_client_udp_size(
        coredns: tuple[ServeProcess, StubUpstream, dict[str, int]], payload: int | None) -> None:
    _, _, p = coredns
    q = dns.message.make_query("big.test.", "TXT", use_edns=payload is not None,
                               payload=payload or 0)
    raw = dns.query.udp(q, "127.0.0.1", port=p["Big"], timeout=5, raise_on_truncation=False)
    assert raw.flags & dns.flags.TC and len(raw.to_wire()) <= (payload or 512)
    full = dns.query.tcp(q, "127.0.0.1", port=p["Big"], timeout=5)
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 12


# --- AKS's default Corefile ------------------------------------------------------------------

AKS_TEMPLATES = r"""
    template ANY ANY internal.cloudapp.net {
        match "^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"
        rcode NXDOMAIN
        fallthrough
    }
    template ANY ANY reddog.microsoft.com {
        rcode NXDOMAIN
    }
"""


@pytest.fixture(scope="module")
def aks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, StubUpstream]]:
    tmp = tmp_path_factory.mktemp("aks")
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    with StubUpstream() as up:
        (tmp / "Corefile").write_text(f""". {{
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        snapshot cluster.yaml
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . {up.hostport}
    cache 30
    loop
    reload
    loadbalance
    {AKS_TEMPLATES}
}}
""")
        with ServeProcess(tmp / "Corefile", workers=2,
                          probe=("api.prod.svc.cluster.local.", "A")) as srv:
            yield srv, up


@pytest.mark.parametrize("tcp", [False, True])
def test_aks_corefile(aks: tuple[ServeProcess, StubUpstream], tcp: bool) -> None:
    srv, up = aks
    t = "tcp" if tcp else "udp"
    # a search-path expansion: four labels or more before internal.cloudapp.net
    deep = f"api.prod.svc.cluster{t}.abcdefgh.internal.cloudapp.net."
    r = ask(srv.port, deep, "A", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA and not r.answer
    assert up.count(deep) == 0
    r = ask(srv.port, f"a.b.c.d{t}.INTERNAL.cloudapp.net.", "AAAA", tcp)   # case-insensitive
    assert r.rcode() == dns.rcode.NXDOMAIN and up.count(f"a.b.c.d{t}.internal.cloudapp.net.") == 0
    # a VM's own name: fewer labels, fallthrough to forward
    shallow = f"vm{t}.abcdefgh.internal.cloudapp.net."
    before = up.count(shallow)
    r = ask(srv.port, shallow, "A", tcp)
    assert up.count(shallow) == before + 1 and r.rcode() == dns.rcode.NOERROR
    # reddog.microsoft.com and every name below it: NXDOMAIN, never forwarded
    for name in ("reddog.microsoft.com.", f"x{t}.reddog.microsoft.com.",
                 f"api.prod.svc{t}.reddog.microsoft.com."):
        r = ask(srv.port, name, "A", tcp)
        assert r.rcode() == dns.rcode.NXDOMAIN and up.count(name) == 0, name
    # cluster names: kubernetes, unchanged
    r = ask(srv.port, "api.prod.svc.cluster.local.", "A", tcp)
    assert [rd.address for rrset in r.answer for rd in rrset] == ["10.96.1.10"]
    r = ask(srv.port, "nope.prod.svc.cluster.local.", "A", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN
    # everything else: forward
    before = up.count(f"www{t}.example.com.")
    ask(srv.port, f"www{t}.example.com.", "A", tcp)
    assert up.count(f"www{t}.example.com.") == before + 1


# --- a template inside cluster.local: fallthrough resumes at the kubernetes table ------------

@pytest.fixture(scope="module")
def cluster_template(tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[tuple[ServeProcess, StubUpstream]]:
    tmp = tmp_path_factory.mktemp("cltemplate")
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    with StubUpstream() as up:
        (tmp / "Corefile").write_text(f""". {{
    kubernetes cluster.local {{
        snapshot cluster.yaml
    }}
    template IN A cluster.local {{
        match "^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)-(?P<c>[0-9]+)-(?P<d>[0-9]+)[.]cluster[.]local[.]$"
        answer "{{{{ .Name }}}} 60 IN A {{{{ .Group.a }}}}.{{{{ .Group.b }}}}.{{{{ .Group.c }}}}.{{{{ .Group.d }}}}"
        fallthrough
    }}
    forward . {up.hostport}
}}
strict.test {{
    template IN A strict.test {{
        match "^ok[.]strict[.]test[.]$"
        answer "ok.strict.test. 5 IN A 192.0.2.7"
    }}
    forward . {up.hostport}
}}
""")
        with ServeProcess(tmp / "Corefile", workers=2,
                          probe=("api.prod.svc.cluster.local.", "A")) as srv:
            yield srv, up


@pytest.mark.parametrize("tcp", [False, True])
def test_fallthrough_resumes_at_the_kubernetes_table(
        cluster_template: tuple[ServeProcess, StubUpstream], tcp: bool) -> None:
    srv, up = cluster_template
    r = ask(srv.port, "ip-10-1-2-3.cluster.local.", "A", tcp)          # the template
    assert texts(r) == ["ip-10-1-2-3.cluster.local. 60 IN A 10.1.2.3"]
    r = ask(srv.port, "api.prod.svc.cluster.local.", "A", tcp)         # no match: kubernetes
    assert r.rcode() == dns.rcode.NOERROR
    assert [rd.address for rrset in r.answer for rd in rrset] == ["10.96.1.10"]
    r = ask(srv.port, "api.prod.svc.cluster.local.", "AAAA", tcp)      # other type: kubernetes
    assert [rd.address for rrset in r.answer for rd in rrset] == ["fd00:96::10"]
    r = ask(srv.port, "nope.prod.svc.cluster.local.", "A", tcp)        # kubernetes' NXDOMAIN
    assert r.rcode() == dns.rcode.NXDOMAIN and up.count("nope.prod.svc.cluster.local.") == 0


@pytest.mark.parametrize("tcp", [False, True])
def test_no_fallthrough_is_servfail(cluster_template: tuple[ServeProcess, StubUpstream],
                                    tcp: bool) -> None:
    srv, up = cluster_template
    r = ask(srv.port, "ok.strict.test.", "A", tcp)
    assert texts(r) == ["ok.strict.test. 5 IN A 192.0.2.7"]
    before = up.count("other.strict.test.")
    r = ask(srv.port, "other.strict.test.", "A", tcp)
    assert r.rcode() == dns.rcode.SERVFAIL and up.count("other.strict.test.") == before
    ask(srv.port, "other.strict.test.", "MX", tcp)    # another type: not this template's
    assert up.count("other.strict.test.") == before + 1



# --- a template in zone "." that matches few names: the rest never leaves C ------------------

def _to_python(srv: ServeProcess, counter: str = "C_TO_PYTHON") -> int:
    """Queries the workers' C engine handed to Python (C_TO_PYTHON, every worker row;
    C_FORWARD: UDP misses its own forwarder took)."""
    import os

    from fastdns._loop import counter_layout
    from fastdns.stats import CounterSegment

    names = [n for n in os.listdir("/dev/shm") if n.startswith(f"fastdns-{srv.pid}-")
             and n.endswith("-stats")]
    assert len(names) == 1, names
    seg = CounterSegment.attach("/" + names[0])
    try:
        at = counter_layout()[counter]
        return seg.sum_range(at, at + 1)[0]
    finally:
        seg.close()


@pytest.fixture(scope="module")
def root_template(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[ServeProcess, StubUpstream]]:
    tmp = tmp_path_factory.mktemp("roottemplate")
    write_snapshot(tmp / "cluster.yaml", cluster_objects())
    with StubUpstream(records={("www.example.org.", "A"): ["192.0.2.80"]}) as up:
        (tmp / "Corefile").write_text(f""". {{
    template ANY ANY . {{
        match "^foo\\."
        answer "{{{{ .Name }}}} 60 IN A 192.0.2.53"
        fallthrough
    }}
    template IN TXT . {{
        match "(^|[.])txt[.]"
        answer "{{{{ .Name }}}} 60 IN TXT \\"t\\""
        fallthrough
    }}
    kubernetes cluster.local {{
        snapshot cluster.yaml
    }}
    forward . {up.hostport}
}}
""")
        with ServeProcess(tmp / "Corefile", workers=2,
                          probe=("api.prod.svc.cluster.local.", "A")) as srv:
            yield srv, up


@pytest.mark.parametrize("tcp", [False, True])
def test_names_no_template_matches_stay_in_c(root_template: tuple[ServeProcess, StubUpstream],
                                             tcp: bool) -> None:
    srv, up = root_template
    before = _to_python(srv)
    for _ in range(20):         # kubernetes answers, negatives, other types: all in C
        r = ask(srv.port, "api.prod.svc.cluster.local.", "A", tcp)
        assert [rd.address for rrset in r.answer for rd in rrset] == ["10.96.1.10"]
        r = ask(srv.port, "Api.Prod.Svc.Cluster.Local.", "AAAA", tcp)
        assert [rd.address for rrset in r.answer for rd in rrset] == ["fd00:96::10"]
        r = ask(srv.port, "nope.prod.svc.cluster.local.", "A", tcp)
        assert r.rcode() == dns.rcode.NXDOMAIN
        r = ask(srv.port, "txt.prod.svc.cluster.local.", "A", tcp)    # the TXT template: type A
        assert r.rcode() == dns.rcode.NXDOMAIN
        r = ask(srv.port, "xfoo.prod.svc.cluster.local.", "A", tcp)   # ^foo\. does not match
        assert r.rcode() == dns.rcode.NXDOMAIN
    assert _to_python(srv) == before
    # a name a template matches: these templates' records are static (owned by the name),
    # so the engine answers from their stored answers, in C too
    r = ask(srv.port, "foo.prod.svc.cluster.local.", "A", tcp)
    assert texts(r) == ["foo.prod.svc.cluster.local. 60 IN A 192.0.2.53"]
    r = ask(srv.port, "FOO.bar.", "MX", tcp)
    assert [t.lower() for t in texts(r)] == ["foo.bar. 60 in a 192.0.2.53"]
    r = ask(srv.port, "a.txt.cluster.local.", "TXT", tcp)
    assert texts(r) == ['a.txt.cluster.local. 60 IN TXT "t"']
    assert _to_python(srv) == before
    # a name outside the cluster that no template matches: forward's stage only, which
    # forwards the miss in C too (a TCP client's over TCP upstream)
    n = up.count("www.example.org.")
    forwarded = _to_python(srv, "C_FORWARD")
    r = ask(srv.port, "www.example.org.", "A", tcp)
    assert [rd.address for rrset in r.answer for rd in rrset] == ["192.0.2.80"]
    assert up.count("www.example.org.") == n + 1
    assert _to_python(srv) == before
    assert _to_python(srv, "C_FORWARD") == forwarded + 1


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_remote_is_the_client_address(tmp_path: Path, tcp: bool) -> None:
    """template_test.go ExampleIPMatch: ``{{ .Remote }}`` is the client's address (CoreDNS's
    test client is 10.240.0.1; here sockets bound to two 127.0.0.0/8 addresses)."""
    from tests.test_plugin_client import _from

    (tmp_path / "Corefile").write_text(""". {
    template IN A {
        match .*
        answer "{{ .Name }} 60 IN A {{ .Remote }}"
        fallthrough
    }
}
""")
    with ServeProcess(tmp_path / "Corefile", workers=2, probe=("probe.example.", "A")) as srv:
        for src in ("127.0.0.31", "127.0.0.32"):
            r, _ = _from(src, srv.port, "test.example.", "A", tcp)
            assert r is not None and [rr.to_text() for rr in r.answer] == \
                [f"test.example. 60 IN A {src}"]
