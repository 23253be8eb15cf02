"""``template CLASS TYPE [ZONES…] { match; answer; additional; authority; rcode; ederror;
fallthrough }`` (CoreDNS ``plugin/template/setup.go``).

Each ``template`` line is one template (CoreDNS allows several per block and
tries them in Corefile order), so ``ONCE`` is False: :func:`parse` gives one
:class:`TemplateConf` per line and :func:`merge` folds a block's lines into one
:class:`TemplatesConf` (Corefile order kept), served by one handler as
CoreDNS's one ``Handler`` with its list of templates. Regular expressions are Go's (translated by
:mod:`fastdns.plugins.template.re2`); record templates are Go templates
(compiled by :mod:`fastdns.plugins.template.gotemplate`); a record template
without any action is parsed as a record here, so it is known valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.ttl

from fastdns.config.dispenser import Dispenser, expect_args, parse_fallthrough
from fastdns.config.lexer import Token
from fastdns.plugins.template.gotemplate import (
    GoTemplate, TemplateSyntaxError, compile_template, go_parse_uint,
)
from fastdns.plugins.template.re2 import RE2Error, compile_re2, translate_re2

__all__ = ["TemplateConf", "TemplatesConf", "merge", "Regex", "RecordTemplate", "parse", "parse_rr", "ONCE",
           "CLASSES", "TYPES", "RCODES", "MAX_REGEX_LEN", "DEFAULT_RR_TTL"]

ONCE = False

MAX_REGEX_LEN = 10000       # CoreDNS's maxRegexpLen (bytes)
DEFAULT_RR_TTL = 3600       # miekg/dns NewRR's TTL for a record written without one

#: miekg/dns StringToClass (case-sensitive, as CoreDNS looks them up).
CLASSES: dict[str, int] = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
#: miekg/dns StringToType (case-sensitive; no TYPEnnn form).
TYPES: dict[str, int] = {
    "None": 0, "A": 1, "NS": 2, "MD": 3, "MF": 4, "CNAME": 5, "SOA": 6, "MB": 7, "MG": 8,
    "MR": 9, "NULL": 10, "PTR": 12, "HINFO": 13, "MINFO": 14, "MX": 15, "TXT": 16, "RP": 17,
    "AFSDB": 18, "X25": 19, "ISDN": 20, "RT": 21, "NSAP-PTR": 23, "SIG": 24, "KEY": 25,
    "PX": 26, "GPOS": 27, "AAAA": 28, "LOC": 29, "NXT": 30, "EID": 31, "NIMLOC": 32,
    "SRV": 33, "ATMA": 34, "NAPTR": 35, "KX": 36, "CERT": 37, "DNAME": 39, "OPT": 41,
    "APL": 42, "DS": 43, "SSHFP": 44, "IPSECKEY": 45, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48,
    "DHCID": 49, "NSEC3": 50, "NSEC3PARAM": 51, "TLSA": 52, "SMIMEA": 53, "HIP": 55,
    "NINFO": 56, "RKEY": 57, "TALINK": 58, "CDS": 59, "CDNSKEY": 60, "OPENPGPKEY": 61,
    "CSYNC": 62, "ZONEMD": 63, "SVCB": 64, "HTTPS": 65, "SPF": 99, "UINFO": 100, "UID": 101,
    "GID": 102, "UNSPEC": 103, "NID": 104, "L32": 105, "L64": 106, "LP": 107, "EUI48": 108,
    "EUI64": 109, "NXNAME": 128, "TKEY": 249, "TSIG": 250, "IXFR": 251, "AXFR": 252,
    "MAILB": 253, "MAILA": 254, "ANY": 255, "URI": 256, "CAA": 257, "AVC": 258,
    "AMTRELAY": 260, "RESINFO": 261, "TA": 32768, "DLV": 32769, "Reserved": 65535,
}
#: miekg/dns StringToRcode (with its NOTIMPL alias).
RCODES: dict[str, int] = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "NOTIMPL": 4,
    "REFUSED": 5, "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
    "DSOTYPENI": 11, "BADSIG": 16, "BADKEY": 17, "BADTIME": 18, "BADMODE": 19,
    "BADNAME": 20, "BADALG": 21, "BADTRUNC": 22, "BADCOOKIE": 23,
}
_CLASS_N = re.compile(r"CLASS\d+")


@dataclass(frozen=True)
class Regex:
    """One ``match`` pattern: Go's text, its Python translation, Go's group names.

    Match with ``pattern.search(name)`` (Go's MatchString is unanchored);
    ``group_names[i]`` is Go's name of group i (``""`` unnamed), for ``.Group``.
    """

    source: str
    pattern: re.Pattern[str]
    group_names: tuple[str, ...]

    @property
    def groups(self) -> int:
        """Number of capturing groups (``index .Match N`` needs N <= groups)."""
        return len(self.group_names) - 1


@dataclass(frozen=True)
class RecordTemplate:
    """One ``answer``/``additional``/``authority`` record.

    ``static`` is the record in canonical text when the template has no
    action (parsed and validated at configuration time), else None: render
    ``template`` per query and read it with :func:`parse_rr`.
    """

    template: GoTemplate
    static: str | None = None


@dataclass(frozen=True)
class TemplateConf:
    """One ``template`` line.

    ``qclass``/``qtype`` are numbers (255 for ANY, which matches every
    class/type; a query for ANY matches every template). ``regexes`` default
    to ``.*``. ``rcode`` is the response code (0 NOERROR). ``ederror`` is an
    RFC 8914 extended error ``(code, extra text)`` or None. ``fallthrough``:
    None (off, a zone match without a regex match is SERVFAIL), else the
    zones for which the next template / plugin is tried.
    """

    qclass: int = 255
    qtype: int = 255
    zones: tuple[str, ...] = (".",)
    regexes: tuple[Regex, ...] = ()
    answer: tuple[RecordTemplate, ...] = ()
    additional: tuple[RecordTemplate, ...] = ()
    authority: tuple[RecordTemplate, ...] = ()
    rcode: int = 0
    ederror: tuple[int, str] | None = None
    fallthrough: tuple[str, ...] | None = None

    @property
    def class_name(self) -> str:
        """The class as written (``IN``, ``ANY``…)."""
        return next(k for k, v in CLASSES.items() if v == self.qclass)

    @property
    def type_name(self) -> str:
        """The type as written (``A``, ``ANY``…)."""
        return next(k for k, v in TYPES.items() if v == self.qtype)


@dataclass(frozen=True)
class TemplatesConf:
    """Every ``template`` line of one server block, in Corefile order (CoreDNS tries
    them in that order); ``zones`` is the union of their zones, in order."""

    templates: tuple[TemplateConf, ...]

    @property
    def zones(self) -> tuple[str, ...]:
        """The zones of all templates (CoreDNS's ``Handler.Zones``), without repeats."""
        return tuple(dict.fromkeys(z for t in self.templates for z in t.zones))


def merge(confs: list[TemplateConf]) -> TemplatesConf:
    """Several ``template`` lines in one server block: all of them, in order."""
    return TemplatesConf(tuple(confs))


def _regex(text: str) -> Regex:
    t = translate_re2(text)
    return Regex(text, compile_re2(text), t.group_names)


DEFAULT_REGEX = _regex(".*")


def _read_records(text: str) -> list[dns.rrset.RRset]:
    """Every record in ``text`` read as miekg/dns ``NewRR`` reads one: names relative
    to the root, TTL (Go or BIND units) and class in either order, both optional."""
    try:
        tok = dns.tokenizer.Tokenizer(text)
        out: list[dns.rrset.RRset] = []
        while True:
            t = tok.get()
            while t.is_eol():
                t = tok.get()
            if t.is_eof():
                return out
            name = dns.name.from_text(t.value, dns.name.root)
            ttl, rdclass = None, None
            t = tok.get()
            for _ in range(2):
                if ttl is None and t.value[:1].isdigit():
                    ttl = dns.ttl.from_text(t.value)
                elif rdclass is None and (t.value.upper() in CLASSES
                                          or _CLASS_N.fullmatch(t.value.upper())):
                    rdclass = dns.rdataclass.from_text(t.value)
                else:
                    break
                t = tok.get()
            if not t.is_identifier():
                raise dns.exception.SyntaxError(f"not a record type: {t.value!r}")
            rdtype = dns.rdatatype.from_text(t.value)
            rdclass = dns.rdataclass.IN if rdclass is None else rdclass
            rd = dns.rdata.from_text(rdclass, rdtype, tok, dns.name.root, relativize=False)
            rrset = dns.rrset.RRset(name, rdclass, rdtype)
            rrset.add(rd, DEFAULT_RR_TTL if ttl is None else ttl)
            out.append(rrset)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def parse_rr(text: str) -> dns.rrset.RRset:
    """A record as miekg/dns ``NewRR`` reads it: origin ``.``, TTL 3600 when none is
    written, class IN unless written; the first record when there are several.

    Raises ``ValueError`` when the text is not a record, or holds none.
    """
    rrsets = _read_records(text)
    if not rrsets:
        raise ValueError("no record")
    return rrsets[0]


_CNAME_WORD = re.compile(r"(?:^|\s)CNAME(?:\s|$)", re.IGNORECASE)
_CHASED = (1, 28, 255)      # A, AAAA and ANY templates can answer A/AAAA queries


def _refuse_cname(tok: Token, qtype: int, text: str, static_type: int | None) -> None:
    """CoreDNS resolves the target of a CNAME answer to an A/AAAA query through the
    server (``upstream.Lookup``) and appends what it finds; fastdns cannot look a
    name up from inside a worker's Python handler, so it refuses such templates
    rather than answer the CNAME alone."""
    if qtype not in _CHASED:
        return
    if static_type == 5 or (static_type is None and _CNAME_WORD.search(text)):
        raise tok.error("a CNAME answer in a template that matches A or AAAA queries is not "
                        "supported by fastdns: CoreDNS resolves the CNAME's target through the "
                        "server and adds its records, which fastdns cannot do yet; use a "
                        "'template CLASS CNAME' line for CNAME queries only, or a zone file")


def _record(tok: Token, section: str, qtype: int = 0) -> RecordTemplate:
    try:
        tmpl = compile_template(tok.text)
    except TemplateSyntaxError as exc:
        raise tok.error(f"could not compile {section} template {tok.text!r}: {exc}") from None
    if not tmpl.static:
        if section == "answer":
            _refuse_cname(tok, qtype, " ".join(p for p in tmpl.parts if isinstance(p, str)),
                          None)
        return RecordTemplate(tmpl)
    text = "".join(p for p in tmpl.parts if isinstance(p, str))
    try:
        rrsets = _read_records(text)
        if not rrsets:
            raise ValueError("no record")
        if len(rrsets) > 1:
            raise ValueError("more than one record (CoreDNS would use only the first)")
    except ValueError as exc:
        raise tok.error(f"invalid {section} record {tok.text!r}: {exc}") from None
    if section == "answer":
        _refuse_cname(tok, qtype, text, int(rrsets[0].rdtype))
    return RecordTemplate(tmpl, rrsets[0].to_text())


def parse(d: Dispenser) -> TemplateConf:
    """Parse one ``template`` line and its block."""
    expect_args(d.name, d.args, 2, None, "template CLASS TYPE [ZONE...]")
    ctok, ttok = d.args[0], d.args[1]
    if ctok.text not in CLASSES:
        raise ctok.error(f"invalid query class {ctok.text!r} (one of {', '.join(CLASSES)})")
    if ttok.text not in TYPES:
        raise ttok.error(f"invalid RR type {ttok.text!r}")
    kw: dict[str, object] = {"qclass": CLASSES[ctok.text], "qtype": TYPES[ttok.text],
                             "zones": d.zones_or_server(d.args[2:])}
    regexes: list[Regex] = []
    sections: dict[str, list[RecordTemplate]] = {"answer": [], "additional": [], "authority": []}
    index_toks: list[tuple[Token, int]] = []
    for sub in d.block():
        name, a = sub.name.text, sub.args
        if name == "match":
            expect_args(sub.name, a, 1, None, "match REGEX...")
            for tok in a:
                size = len(tok.text.encode())
                if size > MAX_REGEX_LEN:
                    raise tok.error(f"regex pattern too long: {size} > {MAX_REGEX_LEN}")
                try:
                    regexes.append(_regex(tok.text))
                except RE2Error as exc:
                    raise tok.error(f"could not parse regex: {tok.text}, {exc}") from None
        elif name in sections:
            expect_args(sub.name, a, 1, None, f"{name} RR...")
            for tok in a:
                rec = _record(tok, name, TYPES[ttok.text])
                sections[name].append(rec)
                index_toks.extend((tok, n) for n in rec.template.match_indexes)
        elif name == "rcode":
            expect_args(sub.name, a, 1, 1, "rcode CODE")
            if a[0].text not in RCODES:
                raise a[0].error(f"unknown rcode {a[0].text!r}")
            kw["rcode"] = RCODES[a[0].text]
        elif name == "ederror":
            expect_args(sub.name, a, 1, 2, "ederror EXTENDED_ERROR_CODE [EXTRA_REASON]")
            try:
                code = go_parse_uint(a[0].text, 10, 16)
            except ValueError as exc:
                raise a[0].error(f"error parsing extended DNS error code {a[0].text!r}: "
                                 f"{exc}") from None
            kw["ederror"] = (code, a[1].text if len(a) > 1 else "")
        elif name == "fallthrough":
            kw["fallthrough"] = parse_fallthrough(a)
        elif name == "upstream":
            raise sub.name.error("template: 'upstream' is not supported by fastdns: CoreDNS "
                                 "resolves CNAME answers' targets through the server, which "
                                 "fastdns cannot do (remove the line; CNAME answers to A/AAAA "
                                 "queries are refused)")
        elif name in ("var", "expr"):
            raise sub.name.error(f"template: {name!r} (expr-lang expressions) is not "
                                 "supported by fastdns")
        else:
            raise d.unknown(sub)
    if not regexes:
        regexes.append(DEFAULT_REGEX)
    most = max(r.groups for r in regexes)
    for tok, n in index_toks:
        if n > most:
            raise tok.error(f"index .Match {n} is out of range: the match regexes have at "
                            f"most {most} group{'s' if most != 1 else ''}")
    kw["regexes"] = tuple(regexes)
    for key, recs in sections.items():
        kw[key] = tuple(recs)
    return TemplateConf(**kw)  # type: ignore[arg-type]
