"""Go ``text/template`` strings of the *template* plugin, compiled to parts.

CoreDNS builds each ``answer``/``additional``/``authority`` record by
executing a Go template against the query's data. Corefiles use a small
part of that language; :func:`compile_template` parses the Go syntax and
accepts exactly that part, refusing the rest with a :class:`TemplateSyntaxError`
that names the construct (nothing is silently ignored):

* fields ``.Name .Zone .Class .Type .Regex``, ``.Group.NAME``,
  ``.Question.Name .Question.Qtype .Question.Qclass``, ``.Message.Id``;
* ``index .Match N`` and ``index .Group "NAME"``;
* ``parseInt ARG BASE BITS`` (Go's ``strconv.ParseUint``; ARG any of the
  above that is a string, or a string constant, possibly in parentheses);
* ``.Meta "NAME"`` (always empty in fastdns, as in CoreDNS without the
  *metadata* plugin, which fastdns does not have);
* string and integer constants, comments ``{{/* */}}``, and the trim
  markers ``{{-`` / ``-}}``.

Refused: ``if``/``range``/``with``/``define``/``template``/``block``,
variables ``$x``, pipelines ``|``, Go's built-in functions (``printf``,
``len``…), ``.Var`` (the ``var`` option is not supported), unknown fields
(Go would fail at every execution), and fields printed whole (``.Match``,
``.Group``, ``.Message``, ``.Question``, ``.``).

The compiled form is :attr:`GoTemplate.parts`: literal ``str`` pieces and
part objects, each with ``render(data)``. :meth:`GoTemplate.render` joins
them; a failure Go would report at execution time (``index`` out of range,
``parseInt`` of a bad number) raises :class:`TemplateExecError`, which
CoreDNS answers with SERVFAIL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Union

__all__ = ["TemplateSyntaxError", "TemplateExecError", "TemplateData", "GoTemplate",
           "Field", "MatchIndex", "GroupField", "GroupIndex", "ParseInt", "Meta", "Part",
           "compile_template", "go_parse_uint"]

NO_VALUE = "<no value>"     # what Go prints for a missing map key (.Group.absent)

_STRING_FIELDS = ("Name", "Zone", "Class", "Type", "Remote", "Regex", "Question.Name")
_INT_FIELDS = ("Question.Qtype", "Question.Qclass", "Message.Id")
_ROOTS = ("Zone", "Name", "Regex", "Match", "Group", "Class", "Type", "Message", "Question",
          "Remote", "Var", "Meta")
_KEYWORDS = ("if", "else", "end", "range", "with", "define", "template", "block",
             "break", "continue")
_BUILTINS = ("and", "call", "html", "js", "len", "not", "or", "print", "printf", "println",
             "slice", "urlquery", "eq", "ne", "lt", "le", "gt", "ge")
_SPACE = " \t\r\n"


class TemplateSyntaxError(ValueError):
    """A template Go cannot parse, or that uses what fastdns does not evaluate."""


class TemplateExecError(Exception):
    """Executing a template failed (CoreDNS answers SERVFAIL)."""


@dataclass(frozen=True)
class TemplateData:
    """What a template is executed against (CoreDNS's ``templateData``).

    ``name`` is the lower-cased query name, ``qname`` the name as asked;
    ``match`` holds the regex's groups (``""`` for one that did not take
    part), ``group`` maps every group number (``"0"``, ``"1"``…) and every
    group name to its text (a later group of the same name wins, as Go);
    ``class_``/``type_`` are the question's, or the template's when the
    question says ANY; ``meta`` looks up metadata (None: none).
    """

    name: str
    zone: str = ""
    regex: str = ""
    match: tuple[str, ...] = ()
    group: Mapping[str, str] = field(default_factory=dict)
    class_: str = "IN"
    type_: str = "A"
    remote: str = ""
    qname: str = ""
    qtype: int = 1
    qclass: int = 1
    msg_id: int = 0
    meta: Callable[[str], str] | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """A plain field: ``path`` is one of ``Name Zone Class Type Remote Regex
    Question.Name Question.Qtype Question.Qclass Message.Id``."""

    path: str

    def render(self, d: TemplateData) -> str:
        p = self.path
        value: object = (d.name if p == "Name" else d.zone if p == "Zone"
                         else d.class_ if p == "Class" else d.type_ if p == "Type"
                         else d.remote if p == "Remote" else d.regex if p == "Regex"
                         else d.qname if p == "Question.Name" else d.qtype if p == "Question.Qtype"
                         else d.qclass if p == "Question.Qclass" else d.msg_id)
        return str(value)


@dataclass(frozen=True, slots=True)
class MatchIndex:
    """``index .Match N``: group N of the matching regex (0: the whole match)."""

    n: int

    def render(self, d: TemplateData) -> str:
        if self.n >= len(d.match):
            raise TemplateExecError(f"error calling index: index out of range: {self.n}")
        return d.match[self.n]


@dataclass(frozen=True, slots=True)
class GroupField:
    """``.Group.NAME``; Go prints ``<no value>`` for an absent name."""

    name: str

    def render(self, d: TemplateData) -> str:
        value = d.group.get(self.name)
        return NO_VALUE if value is None else value

    def arg(self, d: TemplateData) -> str:
        """As a function argument an absent name is an error in Go."""
        value = d.group.get(self.name)
        if value is None:
            raise TemplateExecError(f"invalid value for .Group.{self.name}; expected string")
        return value


@dataclass(frozen=True, slots=True)
class GroupIndex:
    """``index .Group "NAME"``; ``""`` for an absent name (Go's zero value)."""

    name: str

    def render(self, d: TemplateData) -> str:
        return d.group.get(self.name, "")


@dataclass(frozen=True, slots=True)
class Meta:
    """``.Meta "NAME"``: a metadata value, ``""`` when there is none."""

    name: str

    def render(self, d: TemplateData) -> str:
        return d.meta(self.name) if d.meta is not None else ""


@dataclass(frozen=True, slots=True)
class ParseInt:
    """``parseInt ARG BASE BITS``: Go's ``strconv.ParseUint``, printed in decimal."""

    arg: "Part"
    base: int
    bits: int

    def render(self, d: TemplateData) -> str:
        a = self.arg
        text = a if isinstance(a, str) else (a.arg(d) if isinstance(a, GroupField)
                                             else a.render(d))
        try:
            return str(go_parse_uint(text, self.base, self.bits))
        except ValueError as exc:
            raise TemplateExecError(f"error calling parseInt: {exc}") from None


Part = Union[str, Field, MatchIndex, GroupField, GroupIndex, Meta, ParseInt]


@dataclass(frozen=True)
class GoTemplate:
    """A compiled template: ``parts`` joined in order make the record text.

    ``static`` is True when the text has no action (``parts`` is at most one
    literal); ``match_indexes`` lists every N of ``index .Match N``.
    """

    source: str
    parts: tuple[Part, ...]
    match_indexes: tuple[int, ...] = ()

    @property
    def static(self) -> bool:
        """No action at all: the text is the record."""
        return all(isinstance(p, str) for p in self.parts)

    def render(self, data: TemplateData) -> str:
        """The record text for one query; :class:`TemplateExecError` as Go's Execute."""
        return "".join([p if p.__class__ is str else p.render(data)  # type: ignore[union-attr]
                        for p in self.parts])


def go_parse_uint(s: str, base: int, bits: int) -> int:
    """Go's ``strconv.ParseUint(s, base, bits)``; ``ValueError`` with Go's reason."""
    if not (base == 0 or 2 <= base <= 36):
        raise ValueError(f"parsing {s!r}: invalid base {base}")
    if not 0 <= bits <= 64:
        raise ValueError(f"parsing {s!r}: invalid bit size {bits}")
    bits = bits or 64
    if s == "":
        raise ValueError(f"parsing {s!r}: invalid syntax")
    body, b = s, base
    if base == 0:
        b = 10
        low = s.lower()
        if low.startswith(("0x", "0b", "0o")) and len(s) > 2:
            b, body = {"x": 16, "b": 2, "o": 8}[low[1]], s[2:]
        elif s[0] == "0" and len(s) > 1:
            b, body = 8, s[1:]
        prefixed = body is not s
        if "_" in body:                 # Go's underscoreOK: only between digits (or after a prefix)
            if body.endswith("_") or "__" in body or (body.startswith("_") and not prefixed):
                raise ValueError(f"parsing {s!r}: invalid syntax")
            body = body.replace("_", "")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:b]
    if not body or any(ch not in digits for ch in body.lower()) or not body.isascii():
        raise ValueError(f"parsing {s!r}: invalid syntax")
    value = int(body, b)
    if value >= 1 << bits:
        raise ValueError(f"parsing {s!r}: value out of range")
    return value


# -- lexing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tok:
    kind: str       # field ident string raw number char var lparen rparen pipe assign dot other
    text: str
    pos: int


def _unquote(raw: str, pos: int) -> str:
    """A Go interpreted string literal (with its quotes) → its value."""
    out: list[str] = []
    i, end = 1, len(raw) - 1
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"'}
    while i < end:
        c = raw[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = raw[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "xuU01234567":
            n = {"x": 2, "u": 4, "U": 8}.get(e, 3)
            digits = raw[i + 2:i + 2 + n] if e in "xuU" else raw[i + 1:i + 4]
            okset = "0123456789abcdefABCDEF" if e in "xuU" else "01234567"
            if len(digits) != n or any(ch not in okset for ch in digits):
                raise TemplateSyntaxError(f"bad escape in string {raw} at offset {pos}")
            cp = int(digits, 16 if e in "xuU" else 8)
            if cp > (0xFF if e in "x01234567" else 0x10FFFF):
                raise TemplateSyntaxError(f"bad escape in string {raw} at offset {pos}")
            out.append(chr(cp))
            i += 2 + n if e in "xuU" else 4
        else:
            raise TemplateSyntaxError(f"unknown escape sequence \\{e} in string {raw}")
    return "".join(out)


def _lex_action(src: str, start: int) -> tuple[list[_Tok], int, bool]:
    """Tokens of the action starting at ``start`` (just after ``{{`` and any ``- ``);
    returns (tokens, index after the closing ``}}``, right trim)."""
    toks: list[_Tok] = []
    i, n = start, len(src)
    while True:
        if i >= n:
            raise TemplateSyntaxError("unclosed action")
        c = src[i]
        if src.startswith("}}", i):
            return toks, i + 2, False
        if c in _SPACE:
            j = i
            while j < n and src[j] in _SPACE:
                j += 1
            if src.startswith("-}}", j):
                return toks, j + 3, True
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                if src[j] == "\n":
                    break
                j += 2 if src[j] == "\\" else 1
            if j >= n or src[j] != '"':
                raise TemplateSyntaxError("unterminated quoted string")
            toks.append(_Tok("string", _unquote(src[i:j + 1], i), i))
            i = j + 1
        elif c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise TemplateSyntaxError("unterminated raw quoted string")
            toks.append(_Tok("string", src[i + 1:j], i))
            i = j + 1
        elif c == "'":
            j = src.find("'", i + 1)
            if j < 0:
                raise TemplateSyntaxError("unterminated character constant")
            toks.append(_Tok("char", src[i:j + 1], i))
            i = j + 1
        elif c == "." and (i + 1 < n and (src[i + 1].isalnum() or src[i + 1] == "_")) \
                and not src[i + 1].isdigit():
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            toks.append(_Tok("field", src[i + 1:j], i))
            i = j
        elif c == "." and not (i + 1 < n and src[i + 1].isdigit()):
            toks.append(_Tok("dot", ".", i))
            i += 1
        elif c.isdigit() or (c in "+-." and i + 1 < n and src[i + 1].isdigit()):
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] in "._+-") and not src.startswith("}}", j):
                if src[j] in "+-" and src[j - 1].lower() not in "ep":
                    break
                j += 1
            toks.append(_Tok("number", src[i:j], i))
            i = j
        elif c == "$":
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            toks.append(_Tok("var", src[i:j], i))
            i = j
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            toks.append(_Tok("ident", src[i:j], i))
            i = j
        elif c == "(":
            toks.append(_Tok("lparen", c, i))
            i += 1
        elif c == ")":
            toks.append(_Tok("rparen", c, i))
            i += 1
        elif c == "|":
            toks.append(_Tok("pipe", c, i))
            i += 1
        elif src.startswith(":=", i) or c in "=,":
            w = 2 if c == ":" else 1
            toks.append(_Tok("assign", src[i:i + w], i))
            i += w
        else:
            raise TemplateSyntaxError(f"unexpected {c!r} in action")


# -- parsing ------------------------------------------------------------------------------

class _Compiler:
    def __init__(self, src: str) -> None:
        self.src = src
        self.match_indexes: list[int] = []

    def operands(self, toks: list[_Tok]) -> list[list[_Tok]]:
        """Split a command into operands: a field chain, a constant, or ``( … )``."""
        out: list[list[_Tok]] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "lparen":
                depth, j = 0, i
                while j < len(toks):
                    depth += {"lparen": 1, "rparen": -1}.get(toks[j].kind, 0)
                    if depth == 0:
                        break
                    j += 1
                if depth:
                    raise TemplateSyntaxError("unclosed left paren")
                out.append(toks[i:j + 1])
                i = j + 1
            elif t.kind == "rparen":
                raise TemplateSyntaxError("unexpected right paren")
            elif t.kind == "field":
                j = i + 1
                while j < len(toks) and toks[j].kind == "field" and toks[j].pos == \
                        toks[j - 1].pos + len(toks[j - 1].text) + 1:
                    j += 1
                out.append(toks[i:j])
                i = j
            else:
                out.append([t])
                i += 1
        return out

    def action(self, toks: list[_Tok]) -> Part:
        if not toks:
            raise TemplateSyntaxError("missing value for command")
        first = toks[0]
        if first.kind == "ident" and first.text in _KEYWORDS:
            raise TemplateSyntaxError(f"{{{{{first.text}}}}} actions are not supported by fastdns")
        if any(t.kind == "var" for t in toks):
            var = next(t for t in toks if t.kind == "var")
            raise TemplateSyntaxError(f"template variables ({var.text}) are not supported by fastdns")
        if any(t.kind == "assign" for t in toks):
            raise TemplateSyntaxError("assignments are not supported by fastdns")
        depth = 0
        for t in toks:
            depth += {"lparen": 1, "rparen": -1}.get(t.kind, 0)
            if t.kind == "pipe" and depth == 0:
                raise TemplateSyntaxError("pipelines ('|') are not supported by fastdns")
        return self.command(toks)

    def command(self, toks: list[_Tok]) -> Part:
        ops = self.operands(toks)
        if not ops:
            raise TemplateSyntaxError("missing value for command")
        head = ops[0]
        args = ops[1:]
        t = head[0]
        if t.kind == "ident":
            return self.call(t.text, args)
        if t.kind == "field":
            return self.field(head, args)
        if args:
            raise TemplateSyntaxError(f"can't give argument to non-function {self.text(head)}")
        return self.operand(head)

    def text(self, op: list[_Tok]) -> str:
        return self.src[op[0].pos:op[-1].pos + len(op[-1].text) + (1 if op[-1].kind == "field"
                                                                   else 0)]

    def operand(self, op: list[_Tok]) -> Part:
        t = op[0]
        if t.kind == "lparen":
            inner = op[1:-1]
            if any(x.kind == "pipe" for x in inner):
                raise TemplateSyntaxError("pipelines ('|') are not supported by fastdns")
            return self.command(inner)
        if t.kind == "string":
            return t.text
        if t.kind == "number":
            if not t.text.lstrip("+-").isdigit():
                raise TemplateSyntaxError(f"number {t.text} is not supported by fastdns "
                                          "(decimal integers only)")
            return str(int(t.text))
        if t.kind == "field":
            return self.field(op, [])
        if t.kind == "dot":
            raise TemplateSyntaxError("{{ . }} (the whole template data) is not supported by "
                                      "fastdns")
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return t.text
            return self.call(t.text, [])
        if t.kind == "char":
            raise TemplateSyntaxError(f"character constant {t.text} is not supported by fastdns")
        raise TemplateSyntaxError(f"unexpected {t.text!r} in operand")

    def field(self, chain: list[_Tok], args: list[list[_Tok]]) -> Part:
        names = [t.text for t in chain]
        path = ".".join(names)
        root = names[0]
        if root not in _ROOTS:
            raise TemplateSyntaxError(
                f"can't evaluate field {root}: the template data has "
                + ", ".join(f".{r}" for r in _ROOTS))
        if root == "Var":
            raise TemplateSyntaxError(".Var is not supported by fastdns (nor is the 'var' option)")
        if root == "Meta":
            if len(names) != 1 or len(args) != 1 or len(args[0]) != 1 \
                    or args[0][0].kind != "string":
                raise TemplateSyntaxError('.Meta takes one metadata name: {{ .Meta "NAME" }}')
            return Meta(args[0][0].text)
        if args:
            raise TemplateSyntaxError(f".{path} is not a method but has arguments")
        if path in _STRING_FIELDS or path in _INT_FIELDS:
            return Field(path)
        if root == "Group" and len(names) == 2:
            return GroupField(names[1])
        whole = {"Match": "use index .Match N", "Group": "use .Group.NAME",
                 "Message": "only .Message.Id is supported",
                 "Question": "use .Question.Name, .Question.Qtype or .Question.Qclass"}
        if len(names) == 1 and root in whole:
            raise TemplateSyntaxError(f".{root} prints a whole Go value, not record text "
                                      f"({whole[root]})")
        raise TemplateSyntaxError(f".{path} is not supported by fastdns "
                                  f"({whole.get(root, 'no such field')})")

    def call(self, name: str, args: list[list[_Tok]]) -> Part:
        if name == "index":
            return self.index(args)
        if name == "parseInt":
            return self.parse_int(args)
        if name in ("true", "false", "nil"):
            raise TemplateSyntaxError(f"can't give argument to non-function {name}"
                                      if args else f"{name} is not a command")
        if name in _BUILTINS:
            raise TemplateSyntaxError(f"function {name!r} is not supported by fastdns "
                                      "(only index and parseInt)")
        raise TemplateSyntaxError(f"function {name!r} not defined")

    def index(self, args: list[list[_Tok]]) -> Part:
        usage = 'index takes .Match N or .Group "NAME"'
        if len(args) != 2:
            raise TemplateSyntaxError(usage)
        target, key = [t.text for t in args[0]], args[1]
        if target == ["Match"] and len(key) == 1 and key[0].kind == "number" \
                and key[0].text.isdigit():
            n = int(key[0].text)
            self.match_indexes.append(n)
            return MatchIndex(n)
        if target == ["Group"] and len(key) == 1 and key[0].kind == "string":
            return GroupIndex(key[0].text)
        raise TemplateSyntaxError(usage)

    def parse_int(self, args: list[list[_Tok]]) -> Part:
        usage = "parseInt takes a string, a base and a bit size: {{ parseInt .Group.x 16 8 }}"
        if len(args) != 3:
            raise TemplateSyntaxError(f"wrong number of args for parseInt: want 3 got "
                                      f"{len(args)} ({usage})")
        arg = self.operand(args[0])
        if isinstance(arg, (Field, ParseInt)) and not (isinstance(arg, Field)
                                                       and arg.path in _STRING_FIELDS):
            raise TemplateSyntaxError(f"parseInt: {self.text(args[0])} is not a string ({usage})")
        if isinstance(arg, str) and args[0][0].kind != "string":
            raise TemplateSyntaxError(f"parseInt: {self.text(args[0])} is not a string ({usage})")
        nums: list[int] = []
        for op in args[1:]:
            if len(op) != 1 or op[0].kind != "number" or not op[0].text.lstrip("+-").isdigit():
                raise TemplateSyntaxError(f"parseInt: {self.text(op)} is not an integer "
                                          f"({usage})")
            nums.append(int(op[0].text))
        base, bits = nums
        if not (base == 0 or 2 <= base <= 36):
            raise TemplateSyntaxError(f"parseInt: invalid base {base} (0 or 2..36)")
        if not 0 <= bits <= 64:
            raise TemplateSyntaxError(f"parseInt: invalid bit size {bits} (0..64)")
        return ParseInt(arg, base, bits)


def compile_template(text: str) -> GoTemplate:
    """Parse a Go template (the fastdns subset); :class:`TemplateSyntaxError` names
    what is wrong or unsupported."""
    comp = _Compiler(text)
    parts: list[Part] = []
    lit: list[str] = []
    i, n = 0, len(text)
    trim_next = False
    while i <= n:
        j = text.find("{{", i)
        chunk = text[i:] if j < 0 else text[i:j]
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        if j < 0:
            lit.append(chunk)
            break
        k = j + 2
        if text.startswith("-", k) and k + 1 < n and text[k + 1] in _SPACE:
            chunk = chunk.rstrip(_SPACE)
            k += 2
        lit.append(chunk)
        if text.startswith("/*", k):
            end = text.find("*/", k + 2)
            if end < 0:
                raise TemplateSyntaxError("unclosed comment")
            rest = end + 2
            if text.startswith("}}", rest):
                i, trim_next = rest + 2, False
            elif text.startswith(" -}}", rest):
                i, trim_next = rest + 4, True
            else:
                raise TemplateSyntaxError("comment ends before closing delimiter")
            continue
        toks, i, trim_next = _lex_action(text, k)
        part = comp.action(toks)
        if isinstance(part, str):
            lit.append(part)
            continue
        if lit and "".join(lit):
            parts.append("".join(lit))
        lit = []
        parts.append(part)
    if "".join(lit):
        parts.append("".join(lit))
    return GoTemplate(text, tuple(parts), tuple(comp.match_indexes))
