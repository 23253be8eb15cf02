"""Parsing of ``template``: CoreDNS's plugin/template/setup_test.go cases (TestSetup,
TestSetupParse, TestSetupParseLargeRegex; TestSetupParseVar/Expr are refused as a whole:
fastdns has no expr-lang), with the values and the located errors fastdns gives, and
what fastdns refuses where CoreDNS would accept (each in the README's differences)."""

from __future__ import annotations

import pickle

import pytest

from fastdns.config import parse, registry
from fastdns.errors import ConfigError
from fastdns.plugins.template.conf import TemplateConf, TemplatesConf

SERVER = "domain.com.:8053 dynamic.domain.com.:8053"     # setup_test.go's ServerBlockKeys


def _conf(block: str, zone: str = SERVER) -> TemplatesConf:
    return parse(f"{zone} {{\n{block}\n}}\n", filename="Corefile", env={}).servers[0] \
        .plugin("template")


def _err(block: str, zone: str = SERVER) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(f"{zone} {{\n{block}\n}}\n", filename="C", env={})
    return info.value


def _check(block: str, where: str, message: str, zone: str = SERVER) -> None:
    err = _err(block, zone)
    assert err.file == "C"
    assert (f"{err.line}:{err.column}", err.message[:len(message)]) == (where, message), str(err)


def test_registered_several_per_block_merged() -> None:
    spec = registry.spec("template")
    assert spec is not None and spec.once is False and spec.merge is not None
    conf = _conf("template IN A example {\n}\ntemplate IN MX example. {\n}\n"
                 "template ANY ANY {\n rcode NXDOMAIN\n}")
    assert isinstance(conf, TemplatesConf) and len(conf.templates) == 3
    assert [t.type_name for t in conf.templates] == ["A", "MX", "ANY"]   # Corefile order
    assert conf.zones == ("example.", "domain.com.", "dynamic.domain.com.")
    pickle.loads(pickle.dumps(conf)) == conf and hash(conf)    # sent to workers, compared on reload


# --- TestSetup / TestSetupParse: accepted --------------------------------------------------------

def test_setup_rcode() -> None:
    t = _conf("template ANY ANY {\n rcode NXDOMAIN\n}").templates[0]
    assert (t.qclass, t.qtype, t.zones, t.rcode) == (255, 255, ("domain.com.", "dynamic.domain.com."), 3)
    assert [r.source for r in t.regexes] == [".*"] and t.fallthrough is None


@pytest.mark.parametrize("block", [
    "template ANY ANY (?P<x>",              # a zone argument, not a regex
    "template ANY ANY {\n\n}",
    """template ANY AAAA example.com {
        match ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]com
        authority "example.com 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)"
        fallthrough
    }""",
    """template IN ANY example.com {
        match "[.](example[.]com[.]dc1[.]example[.]com[.])$"
        rcode NXDOMAIN
        authority "{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.example.com (1 60 60 60 60)"
        fallthrough example.com
    }""",
    """template IN A example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }
    template IN MX example. {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }""",
    """template IN A example {
        match ^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$
        answer "{{ .Name }} 3600 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
    }""",
    """template IN MX example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        authority  "example. 60 IN NS ns0.example."
        authority  "example. 60 IN NS ns1.example."
        additional "ns0.example. 60 IN A 203.0.113.8"
        additional "ns1.example. 60 IN A 198.51.100.8"
    }""",
    """template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
    }""",
])
def test_setup_parse_accepted(block: str) -> None:
    assert _conf(block).templates


def test_values() -> None:
    t = _conf("""template IN ANY example.com {
        match "[.](example[.]com[.]dc1[.]example[.]com[.])$"
        rcode NXDOMAIN
        authority "example.com 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
        fallthrough example.com
    }""").templates[0]
    assert isinstance(t, TemplateConf)
    assert (t.qclass, t.qtype, t.zones, t.rcode) == (1, 255, ("example.com.",), 3)
    assert t.ederror == (21, "Blocked according to RFC2606") and t.fallthrough == ("example.com.",)
    assert t.authority[0].static == ("example.com. 60 IN SOA ns.example.com. "
                                     "hostmaster.example.com. 1 60 60 60 60")
    assert t.regexes[0].groups == 1
    assert _conf("template ANY ANY {\n fallthrough\n}").templates[0].fallthrough == (".",)


# --- TestSetup / TestSetupParse: refused, located ------------------------------------------------

@pytest.mark.parametrize("block,where,message", [
    ("template", "2:1", "wrong number of arguments for 'template'"),
    ("template X", "2:1", "wrong number of arguments for 'template'"),
    ("template X ANY", "2:10", "invalid query class 'X'"),
    ("template ANY", "2:1", "wrong number of arguments for 'template'"),
    ("template ANY X", "2:14", "invalid RR type 'X'"),
    ("template ANY ANY .* {\n notavailable\n}", "2:18", "zone '.*' is not a valid domain name"),
    ("template ANY ANY {\n notavailable\n}", "3:2", "unknown property 'notavailable'"),
    ("template ANY ANY {\n answer\n}", "3:2", "wrong number of arguments for 'answer'"),
    ("template ANY ANY {\n additional\n}", "3:2", "wrong number of arguments for 'additional'"),
    ("template ANY ANY {\n rcode\n}", "3:2", "wrong number of arguments for 'rcode'"),
    ("template ANY ANY {\n rcode UNDEFINED\n}", "3:8", "unknown rcode 'UNDEFINED'"),
    ('template ANY ANY {\n answer "{{"\n}', "3:9", "could not compile answer template"),
    ('template ANY ANY {\n additional "{{"\n}', "3:13", "could not compile additional template"),
    ('template ANY ANY {\n authority "{{"\n}', "3:12", "could not compile authority template"),
    ('template ANY ANY {\n answer "{{ notAFunction }}"\n}', "3:9",
     "could not compile answer template '{{ notAFunction }}': function 'notAFunction' not defined"),
    ('template ANY ANY invalid {\n rcode NXDOMAIN\n ederror invalid "Blocked"\n}', "4:10",
     "error parsing extended DNS error code 'invalid'"),
    ("template ANY ANY invalid {\n ederror too many arguments\n}", "3:19", "wrong number of arguments for 'ederror'"),
])
def test_setup_parse_refused(block: str, where: str, message: str) -> None:
    _check(block, where, message)


def test_large_regex() -> None:
    _check("template ANY A example.com {\n match " + "a" * 10001 + "\n}", "3:8",
           "regex pattern too long: 10001 > 10000")
    assert _conf("template ANY A example.com {\n match " + "a" * 10000 + "\n}").templates


@pytest.mark.parametrize("regex,message", [
    ("(a", "could not parse regex: (a, error parsing regexp: missing closing )"),
    (r"\1", "could not parse regex"),
    ("(?=x)", "could not parse regex: (?=x), error parsing regexp: lookahead"),
])
def test_bad_regex(regex: str, message: str) -> None:
    _check(f'template ANY ANY {{\n match "{regex}"\n}}', "3:8", message)


# --- stricter than CoreDNS (Go would fail at every query) ------------------------------------

@pytest.mark.parametrize("block,where,message", [
    # setup_test.go accepts these: Go checks names and arguments only when executing
    ('template ANY ANY {\n answer "{{ parseInt }}"\n}', "3:9",
     "could not compile answer template '{{ parseInt }}': wrong number of args for parseInt"),
    ('template ANY A example.com {\n answer "{{ .Name }} A {{ .Grup.d }}"\n}', "3:9",
     "could not compile answer template"),
    # template_test.go BrokenTemplate: no regex has a group 2
    ('template ANY ANY {\n match "[.]example[.]$"\n answer "{{ .Name }} 60 IN TXT \\"{{ index .Match 2 }}\\""\n}',
     "4:9", "index .Match 2 is out of range"),
    ('template ANY ANY {\n answer "x. 60 IN A 1.2.3.4 extra"\n}', "3:9", "invalid answer record"),
])
def test_refused_at_load_not_per_query(block: str, where: str, message: str) -> None:
    _check(block, where, message)


# --- not supported by fastdns ------------------------------------------------------------------

@pytest.mark.parametrize("block,where,message", [
    # CNAMEWithoutUpstream (CoreDNS resolves the target through the server)
    ('template ANY ANY {\n match "example[.]net[.]"\n answer "example.net 60 IN CNAME target.example.com"\n}',
     "4:9", "a CNAME answer in a template that matches A or AAAA queries"),
    ('template IN A {\n answer "{{ .Name }} 60 IN CNAME target.example.com"\n}',
     "3:9", "a CNAME answer in a template that matches A or AAAA queries"),
    ("template ANY ANY {\n upstream\n}", "3:2", "template: 'upstream' is not supported"),
    ("template ANY ANY {\n upstream 8.8.8.8\n}", "3:2", "template: 'upstream' is not supported"),
    # TestSetupParseVar / TestSetupParseExpr
    ("template ANY ANY example. {\n var a 1\n}", "3:2", "template: 'var'"),
    ("template ANY ANY example. {\n expr name() == 'a.example.'\n}", "3:2", "template: 'expr'"),
    ('template ANY ANY {\n answer "{{ if .Name }}x. A 1.2.3.4{{ end }}"\n}', "3:9",
     "could not compile answer template"),
    ('template ANY ANY {\n answer "{{ .Name | printf \\"%s\\" }} A 1.2.3.4"\n}', "3:9",
     "could not compile answer template"),
])
def test_unsupported(block: str, where: str, message: str) -> None:
    _check(block, where, message)


def test_cname_allowed_where_coredns_does_not_chase() -> None:
    t = _conf('template IN CNAME {\n answer "{{ .Name }} 60 IN CNAME target.example.com"\n}')
    assert t.templates[0].answer
    t = _conf('template ANY ANY {\n additional "x.example. 60 IN CNAME target.example.com"\n}')
    assert t.templates[0].additional


def test_served_and_explained() -> None:
    from fastdns.plugins.runtime import engine_config, served
    assert served("template")
    plan = parse(". {\n template ANY ANY a.test b.test {\n  rcode NXDOMAIN\n  fallthrough\n }\n"
                 " template ANY ANY b.test c.test {\n }\n forward . 127.0.0.1:1\n}\n",
                 filename="C", env={})
    plan.require_implemented()
    stages = engine_config(plan)["blocks"][0]["stages"]
    py = [st for st in stages if st["plugin"] == "template"]
    assert len(py) == 1 and py[0]["kind"] == "python"
    assert py[0]["zones_text"] == ["a.test.", "b.test.", "c.test."]
    assert "template" in plan.explain()
