"""The template stage's C prefilter (fastdns/plugins/template/dfa.py + _loop.pyx template_stage).

The C engine must hand a query to Python exactly when the template handler would answer
(or SERVFAIL) it.  Oracles, no mocks: Python's ``re.search`` on the lower-cased
presentation name (the resolver's own match) and :class:`TemplateResolver.resolve` itself;
the decision under test is the real engine's (``Engine.answer_packet`` returns None for a
hand-over, the end-of-chain SERVFAIL when the stage passed the query on).
"""

from __future__ import annotations

import random

import dns.message
import dns.name
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastdns import wire
from fastdns._loop import Engine
from fastdns._wire import name_from_text, name_to_text
from fastdns.plugins.template import dfa
from fastdns.plugins.template.conf import Regex, TemplateConf, TemplatesConf
from fastdns.plugins.template.re2 import compile_re2, translate_re2
from fastdns.plugins.template.serve import TemplateResolver

# CoreDNS's template_test.go / setup_test.go regexes, AKS's, EKS-style, and the odd ones
REGEXES = [
    r"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$",
    r"^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$",
    r".*",
    r"[.]invalid[.]$",
    r"[.]example[.]$",
    r"example[.]net[.]",
    r"$^",
    r"^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$",
    r"^(?P<host>[a-z]+)[.](?P<rest>.*)$",
    r"^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$",
    r"^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]compute[.]internal[.]$",
    r"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]compute[.]internal[.]$",
    r"^[^.]*$",
    r"^[^.]+\.$",
    r"^foo\.",
    r"(?i)FOO[.]Bar",
    r"\\\.",                        # an escaped dot inside a label
    r"\\[0-9]{3}",                  # a \DDD escape
    r"\\[\\\"$@();]",               # the other backslash escapes
    r"^a{2,5}b",
    r"x|^y|z$",
    r"(a|b)*c{0,3}d+?$",
    r"(?m)^a.*$",
    r"[[:upper:]]",                 # never: the name is lower-cased
    r"\d{3}\.",
    r"^\Qa.b\E",
    r"[^a-z0-9.-]",
    r"(?s:.)\z",
    r"^$",
    r"(?:x{0,2}y){2,}",
    r"^(?:[a-z0-9-]{1,63}\.){2}svc\.",
    r"\pL\.\pN",
]
UNSUPPORTED = [r"\bfoo", r"foo\B", r"(a|b)*a(a|b){14}z"]

FRAGMENTS = [b"ip-10-1-2-3", b"ip-10-95-12-8", b"ip0a5f0c09", b"ip0a5F0C0g", b"internal",
             b"cloudapp", b"net", b"compute", b"example", b"invalid", b"foo", b"FOO", b"Bar",
             b"a", b"b", b"aab", b"aaaaab", b"x", b"y", b"z", b"cd", b"svc", b"default",
             b"123", b"a.b", b"\\", b"\"", b"$", b"@", b"(", b")", b";", b" ", b"\x00",
             b"\xff", b"\x7f", b"-", b"_", b"*", b"ab\x0a", b"\xc3\xa9"]


def _labels() -> st.SearchStrategy[list[bytes]]:
    label = st.one_of(st.sampled_from(FRAGMENTS),
                      st.binary(min_size=1, max_size=63),
                      st.text("abcdefxyz0123456789-_.ABFOX", min_size=1, max_size=20)
                      .map(str.encode),
                      st.lists(st.sampled_from(FRAGMENTS), min_size=2, max_size=4)
                      .map(lambda p: b"".join(p)[:63]))
    return st.lists(label, min_size=0, max_size=12).filter(
        lambda ls: sum(len(x) + 1 for x in ls) + 1 <= 255)


def _regex(src: str) -> Regex:
    return Regex(src, compile_re2(src), translate_re2(src).group_names)


def _wire(labels: list[bytes]) -> bytes:
    return b"".join(bytes((len(x),)) + x for x in labels) + b"\x00"


def _query(labels: list[bytes], qtype: int = 1, qclass: int = 1) -> bytes:
    return dns.message.make_query(dns.name.Name(labels + [b""]), qtype, qclass).to_wire()


def _engine(conf: TemplatesConf) -> Engine:
    e = Engine()
    e.configure({"listeners": [{"zones": [[b"\x00", 0]]}],
                 "blocks": [{"stages": [{"kind": "python", "data": dfa.encode(conf),
                                         "zones": [name_from_text(z) for z in conf.zones]}]}]})
    return e


def _c_hands_over(e: Engine, packet: bytes) -> bool:
    """Do the templates take the query: handed to Python (None), or answered by the
    engine from the template's stored answer (AA set)?  Else it went on to the end of
    the chain (SERVFAIL, no AA)."""
    out = e.answer_packet(0, packet)
    if out is None:
        return True
    if out[2] & 0x04:                            # AA: a template's stored answer
        return True
    assert out[3] & 0xF == 2, out                # the end of the chain: SERVFAIL
    return False


def _python_answers(conf: TemplatesConf, packet: bytes) -> bool:
    got: list[bytes] = []
    return TemplateResolver(conf).resolve(wire.parse_query(packet), packet, got.append, False)


@pytest.fixture(scope="module")
def one_regex_engines() -> dict[str, tuple[Engine, object]]:
    out = {}
    for src in REGEXES + UNSUPPORTED:
        conf = TemplatesConf((TemplateConf(regexes=(_regex(src),), fallthrough=(".",)),))
        out[src] = (_engine(conf), compile_re2(src))
    return out


def test_every_listed_regex_compiles() -> None:
    for src in REGEXES:
        assert dfa.compile_dfa(src) is not None, src
    for src in UNSUPPORTED:
        assert dfa.compile_dfa(src) is None, src


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_labels())
def test_c_decision_is_re_search(one_regex_engines, labels: list[bytes]) -> None:
    packet = _query(labels)
    text = name_to_text(_wire(labels)).lower()
    assert text == wire.parse_query(packet).qname.lower()
    for src, (e, rx) in one_regex_engines.items():
        want = rx.search(text) is not None
        got = _c_hands_over(e, packet)
        if src in UNSUPPORTED:
            assert got, (src, text)             # unknown: Python decides every name
        else:
            assert got == want, (src, text)
            assert dfa.dfa_match(dfa.compile_dfa(src), text.encode()) == want


def test_random_names_many(one_regex_engines) -> None:
    """A larger plain random sweep (cheap per name): long names, every byte value."""
    rnd = random.Random(14)
    for _ in range(3000):
        labels = []
        while True:
            k = rnd.choice((1, 2, 3, 5, 10, 30, 63))
            lab = bytes(rnd.choice(FRAGMENTS)[:k] if rnd.random() < 0.5 else
                        bytes(rnd.randrange(256) if rnd.random() < 0.2 else
                              rnd.choice(b"abcxyz019-.ABF\\") for _ in range(k)))
            if not lab or sum(len(x) + 1 for x in labels) + len(lab) + 2 > 255:
                break
            labels.append(lab)
            if rnd.random() < 0.2:
                break
        packet = _query(labels)
        text = name_to_text(_wire(labels)).lower()
        for src, (e, rx) in one_regex_engines.items():
            if src not in UNSUPPORTED:
                assert _c_hands_over(e, packet) == (rx.search(text) is not None), (src, text)


SEEDS = [[b"ip-10-95-12-8", b"example"], [b"ip0a5f0c09", b"example"],
         [b"x", b"ip-10-1-2-3", b"example"], [b"a", b"b", b"c", b"d", b"internal", b"cloudapp", b"net"],
         [b"vm", b"internal", b"cloudapp", b"net"], [b"ip-10-1-2-3", b"compute", b"internal"],
         [b"q", b"ip-10-1-22-3", b"compute", b"internal"], [b"foo", b"bar"], [b"test", b"invalid"],
         [b"www", b"example", b"net"], [b"host", b"sub", b"example"], [b"aab", b"x"],
         [b"web", b"default", b"svc", b"cluster", b"local"], [b"a.b", b"svc"], [b"xyxy"],
         [b"FOO", b"Bar", b"com"], [b"1\\23", b"x"], []]
MUTANTS = b"0123456789abcdefxyz.-_AF\\\xff\x00 $"


def _mutate(rnd: random.Random, labels: list[bytes]) -> list[bytes]:
    labels = list(labels)
    for _ in range(rnd.randint(0, 3)):
        op = rnd.randrange(5)
        if not labels or op == 4:
            labels.insert(rnd.randint(0, len(labels)), rnd.choice(FRAGMENTS))
            continue
        i = rnd.randrange(len(labels))
        lab = bytearray(labels[i])
        j = rnd.randrange(len(lab))
        if op == 0:
            lab[j] = rnd.choice(MUTANTS)
        elif op == 1 and len(lab) < 63:
            lab.insert(j, rnd.choice(MUTANTS))
        elif op == 2 and len(lab) > 1:
            del lab[j]
        elif op == 3:
            del labels[i]
            continue
        labels[i] = bytes(lab)
    while sum(len(x) + 1 for x in labels) + 1 > 255:
        labels.pop()
    return labels


def test_near_misses_of_matching_names(one_regex_engines) -> None:
    """Names one to three edits away from names the real-world regexes match."""
    rnd = random.Random(1014)
    hits = dict.fromkeys(REGEXES, 0)
    for _ in range(4000):
        labels = _mutate(rnd, rnd.choice(SEEDS))
        packet = _query(labels)
        text = name_to_text(_wire(labels)).lower()
        for src in REGEXES:
            e, rx = one_regex_engines[src]
            want = rx.search(text) is not None
            hits[src] += want
            assert _c_hands_over(e, packet) == want, (src, text)
    for src in REGEXES[:4] + REGEXES[9:12]:
        assert hits[src] > 20, (src, hits[src])     # the sweep does reach both answers


def test_longest_text_fits() -> None:
    """127 one-byte labels of \\DDD bytes: the longest text (1016 - 3*127 + ... bytes)."""
    labels = [b"\xff"] * 127
    conf = TemplatesConf((TemplateConf(regexes=(_regex(r"\\255\.$"),), fallthrough=(".",)),))
    e = _engine(conf)
    assert _c_hands_over(e, _query(labels))
    labels = [b"\xff" * 63] * 3 + [b"\xfe" * 61]
    conf = TemplatesConf((TemplateConf(regexes=(_regex(r"^(?:\\255){63}\..*\\254\.$"),),
                                       fallthrough=(".",)),))
    assert _c_hands_over(_engine(conf), _query(labels))
    assert len(name_to_text(_wire(labels))) == 4 * 250 + 4


# --- several templates: zones, class, type, fallthrough, order ----------------------------

ZONES = [".", "example.", "internal.cloudapp.net.", "cloudapp.net.", "net.", "foo.example."]
QTYPES = [1, 28, 15, 16, 255, 33]
QCLASSES = [1, 3, 255]


def _template(rnd: random.Random) -> TemplateConf:
    zones = tuple(rnd.sample(ZONES, rnd.randint(1, 2)))
    nre = rnd.randint(1, 3)
    regexes = tuple(_regex(rnd.choice(REGEXES + UNSUPPORTED[:1])) for _ in range(nre))
    fall = rnd.choice([None, (".",), ("example.",), ("net.", "foo.example.")])
    return TemplateConf(qclass=rnd.choice([1, 255, 3]), qtype=rnd.choice([1, 255, 16, 28]),
                        zones=zones, regexes=regexes, fallthrough=fall)


def test_template_chains_decide_as_the_resolver() -> None:
    rnd = random.Random(7)
    names = [[b"ip-10-1-2-3", b"example"], [b"test", b"example"], [b"x", b"foo", b"example"],
             [b"a", b"b", b"c", b"d", b"internal", b"cloudapp", b"net"],
             [b"vm", b"internal", b"cloudapp", b"net"], [b"www", b"google", b"com"],
             [b"foo", b"bar"], [b"ip0a5f0c09", b"example"], [b"test", b"invalid"], [],
             [b"a\\.b", b"net"], [b"\xff", b"y", b"example"], [b"Foo", b"Bar"]]
    checked = handed = 0
    for _ in range(150):
        conf = TemplatesConf(tuple(_template(rnd) for _ in range(rnd.randint(1, 4))))
        e = _engine(conf)
        for labels in names:
            for qtype in QTYPES:
                for qclass in QCLASSES:
                    packet = _query(labels, qtype, qclass)
                    want = _python_answers(conf, packet)
                    got = _c_hands_over(e, packet)
                    unknown = any(dfa.compile_dfa(r.source) is None
                                  for t in conf.templates for r in t.regexes)
                    if unknown:
                        assert got or not want, (conf, labels, qtype, qclass)
                    else:
                        assert got == want, (conf, labels, qtype, qclass)
                    checked += 1
                    handed += got
    assert 0 < handed < checked


def test_outside_the_stage_zones_never_reaches_the_templates() -> None:
    conf = TemplatesConf((TemplateConf(zones=("example.",), regexes=(_regex(".*"),)),))
    e = _engine(conf)
    assert _c_hands_over(e, _query([b"a", b"example"]))
    assert not _c_hands_over(e, _query([b"a", b"org"]))


# --- the blob is checked whole before the C walk trusts it --------------------------------

def _conf_with(data: bytes) -> dict:
    return {"listeners": [{"zones": [[b"\x00", 0]]}],
            "blocks": [{"stages": [{"kind": "python", "zones": [b"\x00"], "data": data}]}]}


def test_bad_blobs_are_refused() -> None:
    conf = TemplatesConf((TemplateConf(regexes=(_regex(r"^foo\."), _regex(r"\bx")),
                                       fallthrough=(".",)),
                          TemplateConf(zones=("example.",), regexes=(_regex(".*"),))))
    good = dfa.encode(conf)
    Engine().configure(_conf_with(good))
    bad = [good[:-1], good + b"\x00", good[:7], b"\x01\x00", b"\x00",
           (3).to_bytes(2, "little") + good[2:], (1).to_bytes(2, "little") + good[2:]]
    # a transition past the last state, a class past the last class
    d = dfa.compile_dfa(r"^foo\.")
    blob = dfa.encode_dfa(d)
    n, nc = len(d.flags), d.nclasses
    at = good.find(blob)
    assert at > 0
    tr = at + 6 + 256 + n
    bad.append(good[:tr] + (n).to_bytes(2, "little") + good[tr + 2:])
    bad.append(good[:at + 6] + bytes((nc,)) + good[at + 7:])
    bad.append(good[:at + 4] + (n).to_bytes(2, "little") + good[at + 6:])     # start
    bad.append(good[:at] + (0).to_bytes(2, "little") + good[at + 2:])         # no states
    for data in bad:
        with pytest.raises(ValueError):
            Engine().configure(_conf_with(data))
    with pytest.raises(ValueError):
        Engine().configure(_conf_with("text"))  # type: ignore[arg-type]


def test_the_plugin_sends_the_prefilter() -> None:
    from fastdns.plugins.template import PLUGIN
    conf = TemplatesConf((TemplateConf(regexes=(_regex(r"^foo\."),), fallthrough=(".",)),))
    (stage,) = PLUGIN.engine(None, conf)
    assert stage["kind"] == "python" and stage["data"] == dfa.encode(conf)
