"""The template stage's C prefilter: each ``match`` regex as a byte DFA, and the blob the engine walks.

The C engine decides, per query, whether the block's templates would answer
(or SERVFAIL) it: only then is it handed to Python (``TemplateResolver``);
when every template would pass it on, the chain goes on in C.  The decision
needs each regex's *does it match* only, so every regex (RE2, hence regular)
is compiled here, once per configuration, to a deterministic automaton over
the bytes of the name as the resolver sees it: the lower-cased query name in
presentation form with its trailing dot (``q.qname.lower()``, i.e.
:func:`fastdns._wire.name_to_text` of the lower-cased wire name).

How: :mod:`fastdns.plugins.template.re2` translates the Go pattern to Python
``re`` text; Python's own parser (``re._parser``) gives its tree; a Thompson
NFA is built from the tree (literals, classes, ``.``, repeats expanded,
alternation, groups, ``^``/``\\A`` at the start and ``$``/``\\Z`` at the end,
flags); the set of bytes each leaf accepts is asked of Python's ``re`` itself
(the leaf compiled alone, with its flags, tried on every byte the text can
hold), so case folding and classes mean exactly what they mean to the
resolver.  Subset construction with Go's ``MatchString`` (unanchored search:
a match may start anywhere, and the first accepting state decides) gives a
DFA over byte classes, at most :data:`MAX_STATES` states.

The text never holds a byte outside ``0x21..0x7E`` (``name_to_text`` escapes
the rest as ``\\DDD``), in particular no newline: line anchors are text
anchors.  What is not supported (word boundaries ``\\b``/``\\B``, anything
that would exceed the caps) is encoded as "unknown": the engine then hands the
query to Python, which decides; that is correct, only slower.

Blob layout (all integers little-endian), read by ``template_stage`` in
``fastdns/_loop.pyx`` and checked whole by ``_check_template`` there::

    u16 ntemplates
    per template:  u32 size (of the rest of this template)
                   u16 qclass, u16 qtype (255: any), u8 fall (0 off, 1 zones below)
                   u8 nzones, (u8 len, wire name)...      its zones
                   u8 nfall, (u8 len, wire name)...       its fallthrough zones
                   u8 nregex, per regex: u32 size, DFA (size 0: unknown -> Python)
                   u32 size, the stored body the engine answers a match with
                   (size 0: Python writes the answer; see :func:`static_body`)
    DFA:           u16 nstates, u16 nclasses, u16 start, u8 classmap[256],
                   u8 flags[nstates] (1 accept now, 2 accept at the end, 4 dead),
                   u16 next[nstates * nclasses]
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from fastdns._wire import name_from_text
from fastdns.plugins.template.re2 import translate_re2

try:                                    # Python 3.11+
    from re import _constants as _c, _parser as _p
except ImportError:                     # pragma: no cover
    import sre_constants as _c          # type: ignore[no-redef]
    import sre_parse as _p              # type: ignore[no-redef]

__all__ = ["Unsupported", "compile_dfa", "dfa_match", "encode", "encode_dfa", "MAX_STATES",
           "MAX_NFA", "ALPHABET"]

log = logging.getLogger("fastdns.plugins.template")

MAX_STATES = 2048           # DFA states per regex (past it: unknown, Python decides)
MAX_NFA = 20000             # NFA states per regex, repeats expanded
ALPHABET = range(0x21, 0x7F)    # the bytes a presentation-form name holds

F_ACCEPT, F_END, F_DEAD = 1, 2, 4

_BOS = {_c.AT_BEGINNING, _c.AT_BEGINNING_STRING, _c.AT_BEGINNING_LINE}
_EOS = {_c.AT_END, _c.AT_END_STRING, _c.AT_END_LINE}
_CATS = {_c.CATEGORY_DIGIT: r"\d", _c.CATEGORY_NOT_DIGIT: r"\D", _c.CATEGORY_SPACE: r"\s",
         _c.CATEGORY_NOT_SPACE: r"\S", _c.CATEGORY_WORD: r"\w", _c.CATEGORY_NOT_WORD: r"\W"}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT} | ({_c.POSSESSIVE_REPEAT}
                                             if hasattr(_c, "POSSESSIVE_REPEAT") else set())
_LEAF_FLAGS = re.IGNORECASE | re.ASCII | re.DOTALL | re.UNICODE


class Unsupported(Exception):
    """A pattern this compiler does not turn into a DFA (the engine asks Python)."""


def _esc(cp: int) -> str:
    return re.escape(chr(cp))


@functools.lru_cache(maxsize=4096)
def _leaf_mask(text: str, flags: int) -> int:
    """The bytes of :data:`ALPHABET` one leaf (pattern ``text``) accepts, as a bit mask:
    Python's ``re`` decides, with the leaf's flags."""
    pat = re.compile(text, flags & _LEAF_FLAGS)
    mask = 0
    for b in ALPHABET:
        if pat.fullmatch(chr(b)):
            mask |= 1 << b
    return mask


def _leaf_text(op: Any, av: Any) -> str:
    if op is _c.LITERAL:
        return _esc(av)
    if op is _c.NOT_LITERAL:
        return f"[^{_esc(av)}]"
    if op is _c.ANY:
        return "."
    parts = []
    for iop, iav in av:                 # IN
        if iop is _c.NEGATE:
            parts.insert(0, "^")
        elif iop is _c.LITERAL:
            parts.append(_esc(iav))
        elif iop is _c.RANGE:
            parts.append(f"{_esc(iav[0])}-{_esc(iav[1])}")
        elif iop is _c.CATEGORY and iav in _CATS:
            parts.append(_CATS[iav])
        else:
            raise Unsupported(f"class item {iop}")
    if not parts or parts == ["^"]:
        return "[^\\x00-\\U0010ffff]" if not parts else "[\\x00-\\U0010ffff]"
    return "[" + "".join(parts) + "]"


class _NFA:
    def __init__(self) -> None:
        self.edges: list[list[tuple[int, int]]] = []     # (byte mask, target)
        self.eps: list[list[int]] = []
        self.bos: list[list[int]] = []
        self.eos: list[list[int]] = []

    def new(self) -> int:
        if len(self.edges) >= MAX_NFA:
            raise Unsupported(f"more than {MAX_NFA} NFA states")
        self.edges.append([])
        self.eps.append([])
        self.bos.append([])
        self.eos.append([])
        return len(self.edges) - 1

    def seq(self, items: Any, flags: int, start: int) -> int:
        """Build ``items`` from state ``start``; returns the end state."""
        cur = start
        for op, av in items:
            cur = self.node(op, av, flags, cur)
        return cur

    def node(self, op: Any, av: Any, flags: int, cur: int) -> int:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            end = self.new()
            self.edges[cur].append((_leaf_mask(_leaf_text(op, av), flags), end))
            return end
        if op is _c.SUBPATTERN:
            _group, add, rem, sub = av
            return self.seq(sub, (flags | add) & ~rem, cur)
        if op is _c.BRANCH:
            end = self.new()
            for alt in av[1]:
                s = self.new()
                self.eps[cur].append(s)
                self.eps[self.seq(alt, flags, s)].append(end)
            return end
        if op in _REPEATS:
            lo, hi, sub = av
            for _ in range(lo):
                cur = self.seq(sub, flags, cur)
            if hi is _c.MAXREPEAT or hi == _c.MAXREPEAT:
                loop = self.new()
                self.eps[cur].append(loop)
                body = self.new()
                self.eps[loop].append(body)
                self.eps[self.seq(sub, flags, body)].append(loop)
                return loop
            end = self.new()
            for _ in range(hi - lo):
                self.eps[cur].append(end)
                cur = self.seq(sub, flags, cur)
            self.eps[cur].append(end)
            return end
        if op is _c.AT:
            end = self.new()
            if av in _BOS:
                self.bos[cur].append(end)
            elif av in _EOS:
                self.eos[cur].append(end)
            else:
                raise Unsupported(f"assertion {av}")
            return end
        raise Unsupported(f"{op}")


def _closure(nfa: _NFA, states: set[int], bos: bool) -> set[int]:
    out = set(states)
    todo = list(states)
    while todo:
        s = todo.pop()
        for t in nfa.eps[s] + (nfa.bos[s] if bos else []):
            if t not in out:
                out.add(t)
                todo.append(t)
    return out


def _accepts_at_end(nfa: _NFA, states: set[int], accept: int, bos: bool) -> bool:
    seen = set(states)
    todo = list(states)
    while todo:
        s = todo.pop()
        if s == accept:
            return True
        for t in nfa.eps[s] + nfa.eos[s] + (nfa.bos[s] if bos else []):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return False


class DFA:
    """A compiled regex: ``classmap[byte]`` → class, ``next[state][class]``, ``flags``."""

    __slots__ = ("start", "classmap", "flags", "next", "nclasses")

    def __init__(self, start: int, classmap: list[int], flags: list[int],
                 nxt: list[list[int]], nclasses: int) -> None:
        self.start = start
        self.classmap = classmap
        self.flags = flags
        self.next = nxt
        self.nclasses = nclasses


def _build(python: str) -> DFA:
    try:
        tree = _p.parse(python)
    except Exception as exc:                # pragma: no cover - re2.py's output parses
        raise Unsupported(f"parse: {exc}") from None
    nfa = _NFA()
    start = nfa.new()
    flags = tree.state.flags
    accept = nfa.seq(list(tree), flags, start)
    # byte classes: bytes no leaf tells apart share a column
    masks = sorted({m for edges in nfa.edges for m, _ in edges})
    sig: dict[tuple[bool, ...], int] = {}
    classmap = []
    for b in range(256):
        key = tuple(bool(m >> b & 1) for m in masks)
        classmap.append(sig.setdefault(key, len(sig)))
    nclasses = len(sig)
    reps = [classmap.index(k) for k in range(nclasses)]

    # a state's set keeps the NFA states that matter: consuming edges, end edges, accept
    def prune(ss: set[int]) -> frozenset[int]:
        return frozenset(s for s in ss if nfa.edges[s] or nfa.eos[s] or s == accept)

    restart = _closure(nfa, {start}, False)     # unanchored search: a match may start anywhere
    first = _closure(nfa, {start}, True)
    key0 = (prune(first), True)
    ids = {key0: 0}
    order = [key0]
    out_flags: list[int] = []
    nxt: list[list[int]] = []
    i = 0
    while i < len(order):
        ss, initial = order[i]
        i += 1
        fl = 0
        if accept in ss:
            fl |= F_ACCEPT
        if _accepts_at_end(nfa, set(ss), accept, initial):
            fl |= F_END
        row = [0] * nclasses
        if fl & F_ACCEPT:
            row = [ids[(ss, initial)]] * nclasses       # absorbing: the search has matched
        else:
            for k, b in enumerate(reps):
                moved = {t for s in ss for m, t in nfa.edges[s] if m >> b & 1}
                key = (prune(_closure(nfa, moved, False) | restart), False)
                if key not in ids:
                    if len(order) >= MAX_STATES:
                        raise Unsupported(f"more than {MAX_STATES} DFA states")
                    ids[key] = len(order)
                    order.append(key)
                row[k] = ids[key]
        if not ss and not fl:
            fl |= F_DEAD
        out_flags.append(fl)
        nxt.append(row)
    return DFA(0, classmap, out_flags, nxt, nclasses)


@functools.lru_cache(maxsize=512)
def compile_dfa(go_pattern: str) -> DFA | None:
    """The DFA of Go pattern ``go_pattern`` (its ``re.search`` decision on a name's
    presentation text), or None when it is not supported (logged once at debug)."""
    try:
        return _build(translate_re2(go_pattern).python)
    except (Unsupported, RecursionError) as exc:
        log.debug("template: regex %r is decided in Python for every name (%s)", go_pattern, exc)
        return None


def dfa_match(dfa: DFA, text: bytes) -> bool:
    """Run ``dfa`` on ``text`` (the engine's walk, in Python: for tests)."""
    s = dfa.start
    if dfa.flags[s] & F_ACCEPT:
        return True
    for b in text:
        s = dfa.next[s][dfa.classmap[b]]
        fl = dfa.flags[s]
        if fl & F_ACCEPT:
            return True
        if fl & F_DEAD:
            return False
    return bool(dfa.flags[s] & F_END)


def encode_dfa(dfa: DFA | None) -> bytes:
    """One regex's part of the blob (empty: unknown)."""
    if dfa is None:
        return b""
    n = len(dfa.flags)
    out = bytearray()
    out += n.to_bytes(2, "little") + dfa.nclasses.to_bytes(2, "little")
    out += dfa.start.to_bytes(2, "little")
    out += bytes(dfa.classmap)
    out += bytes(dfa.flags)
    for row in dfa.next:
        for t in row:
            out += t.to_bytes(2, "little")
    return bytes(out)


def _names(zones: Any) -> bytes:
    wires = [name_from_text(z.lower()) for z in zones]
    if len(wires) > 255:
        raise ValueError("template: at most 255 zones")
    return bytes((len(wires),)) + b"".join(bytes((len(w),)) + w for w in wires)


def encode(conf: Any) -> bytes:
    """The block's templates (a :class:`~fastdns.plugins.template.conf.TemplatesConf`)
    as the engine's ``template_stage`` reads them (the module doc)."""
    templates = conf.templates if hasattr(conf, "templates") else (conf,)
    out = bytearray(len(templates).to_bytes(2, "little"))
    for t in templates:
        body = bytearray()
        body += t.qclass.to_bytes(2, "little") + t.qtype.to_bytes(2, "little")
        body.append(0 if t.fallthrough is None else 1)
        body += _names(t.zones)
        body += _names(t.fallthrough or ())
        if len(t.regexes) > 255:
            raise ValueError("template: at most 255 regexes in one template")
        body.append(len(t.regexes))
        for r in t.regexes:
            blob = encode_dfa(compile_dfa(r.source))
            body += len(blob).to_bytes(4, "little") + blob
        answer = static_body(t)
        body += len(answer).to_bytes(4, "little") + answer
        out += len(body).to_bytes(4, "little") + body
    return bytes(out)


_DUMMY = "fastdns-template-qname.invalid."


def static_body(t: Any) -> bytes:
    """The answer of a template whose records have no Go template actions, as a stored
    body that fits behind any question (records owned by the query's name point at
    it): the engine then answers a match itself.  b"" when Python must write it:
    records computed per query, a class other than IN (dnspython writes those), an
    ``ederror`` (the option rides in the OPT record, which bodies do not hold), or
    ``rcode SERVFAIL`` (a bare SERVFAIL, as CoreDNS's)."""
    from fastdns import wire
    from fastdns.compiled import any_question_body
    from fastdns.plugins.template.conf import parse_rr
    from fastdns.plugins.template.gotemplate import Field
    from fastdns.plugins.template.serve import _Template, builder_args

    if t.ederror is not None or t.rcode == 2:
        return b""
    args: list[Any] = []
    for r in _Template(t).records:
        if r.args is not None:
            args += r.args
            continue
        parts = r.tmpl.parts           # "{{ .Name }} TTL CLASS TYPE DATA": owned by the name
        if not (len(parts) == 2 and parts[0] == Field("Name") and isinstance(parts[1], str)
                and parts[1][:1].isspace()):
            return b""
        try:
            rr = builder_args(r.section, parse_rr(_DUMMY + parts[1]))
        except ValueError:
            return b""
        if rr is None:
            return b""
        args += rr
    q = wire.parse_query(_dummy_query())
    b = wire.ResponseBuilder(q, rcode=t.rcode, aa=True)
    for a in args:
        b.add(*a)
    try:
        msg = b.to_wire(65535, compress=False)
    except wire.EncodeError:
        return b""
    dummy = name_from_text(_DUMMY)
    sections: list[list[tuple[bytes | None, int, int, int, bytes]]] = [[], [], []]
    counts = [int.from_bytes(msg[6 + 2 * i:8 + 2 * i], "big") for i in range(3)]
    o = 12 + len(dummy) + 4
    for sec, n in enumerate(counts):
        for _ in range(n):
            end = o
            while msg[end]:
                end += 1 + msg[end]
            owner = msg[o:end + 1]
            rtype, rclass, ttl, rdlen = (int.from_bytes(msg[end + 1:end + 3], "big"),
                                         int.from_bytes(msg[end + 3:end + 5], "big"),
                                         int.from_bytes(msg[end + 5:end + 9], "big"),
                                         int.from_bytes(msg[end + 9:end + 11], "big"))
            rdata = msg[end + 11:end + 11 + rdlen]
            if dummy in rdata:
                return b""              # the query's name inside rdata: not static here
            sections[sec].append((None if owner == dummy else owner, rtype, rclass, ttl, rdata))
            o = end + 11 + rdlen
    return any_question_body(t.rcode, True, sections)


@functools.cache
def _dummy_query() -> bytes:
    import dns.message
    return dns.message.make_query(_DUMMY, "A", use_edns=False).to_wire()
