"""Go (RE2) regular expressions translated to Python :mod:`re`, with RE2's refusals.

Corefiles are written for CoreDNS, whose regular expressions are Go's
``regexp`` (RE2 syntax with Perl extensions). Python's ``re`` reads most of
that text, but not all of it the same way, and it accepts much that RE2
refuses. :func:`compile_re2` parses a pattern as Go's ``regexp/syntax``
parser does (``Perl`` flags: ``ClassNL | OneLine | PerlX | UnicodeGroups``)
and writes an equivalent Python pattern in which nothing is left to Python's
own reading: every literal is escaped, every class is a list of code point
ranges, every anchor and flag is explicit.

What is translated:

* alternation, concatenation, capturing groups (numbered as in Go),
  ``(?:re)``, ``(?P<name>re)`` and ``(?<name>re)``;
* ``* + ? {n} {n,} {n,m}`` and their non-greedy ``?`` forms (counts up to
  1000, and nested counts whose product is at most 1000, as Go); a ``{``
  that does not start a valid count is a literal, as in Go (``a{,3}`` is
  the text ``a{,3}``, where Python would read a repetition);
* flags ``(?i) (?m) (?s) (?U)``, negated with ``-``, set for the rest of the
  group or scoped as ``(?i:re)``; each flag is applied atom by atom, so a
  flag in the middle of a pattern means exactly what it means in Go;
* ``^ $`` (start and end of text, or of line with ``(?m)``: Go's ``$``
  without ``(?m)`` does not match before a final newline, so it becomes
  ``\\Z``), ``\\A \\z \\b \\B`` (ASCII word boundaries, as Go);
* ``. [...] [^...]``, ranges, ``\\d \\s \\w`` and negations (ASCII, as Go:
  ``\\s`` is ``[\\t\\n\\f\\r ]``), POSIX classes ``[[:alpha:]]`` and
  ``[[:^alpha:]]`` inside brackets, Unicode general categories
  ``\\pL \\p{Lu} \\PN \\p{^Greek}`` (general categories and ``Any`` only:
  Python has no script tables, so ``\\p{Greek}`` is refused);
* escapes ``\\a \\f \\t \\n \\r \\v``, octal ``\\0 \\012``, ``\\x41``,
  ``\\x{10FFFF}``, any escaped ASCII punctuation, ``\\Q...\\E``.

What is refused with :class:`RE2Error` (RE2 refuses it, Python would not):
backreferences ``\\1`` and ``(?P=name)``, lookahead and lookbehind, atomic
groups, possessive quantifiers (``a*+``), conditionals, comments ``(?#``,
the ``x`` flag, ``\\Z \\G \\K \\u`` and other escapes Go does not know.

Differences that remain: Go runs in linear time while Python backtracks,
so a pattern such as ``(a+)+$`` can take exponential time on a hostile
name in Python (DNS names are at most 255 bytes, which bounds but does not
remove that cost); Unicode tables are Python's ``unicodedata`` version, not
Go's.  Go allows two groups with the same name (Python does not): such a
group, and a group whose name is not a Python identifier, becomes an
unnamed group in Python, and :attr:`Translation.group_names` keeps Go's
names by group number for callers that need them (``SubexpNames()``).

This module is shared: the *template* plugin compiles its ``match``
patterns with it, and the *rewrite* plugin imports it from here.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["RE2Error", "Translation", "translate_re2", "compile_re2", "MAX_REPEAT"]

MAX_REPEAT = 1000           # Go's limit on a {n,m} count and on nested counts' product
MAX_NESTING = 1000          # Go's maximum nesting depth
_MAX_RUNE = 0x10FFFF

_I, _M, _S, _U = 1, 2, 4, 8     # FoldCase, multi-line (not OneLine), DotNL, NonGreedy
_FLAG_BITS = {"i": _I, "m": _M, "s": _S, "U": _U}

Ranges = tuple[tuple[int, int], ...]

_PERL: dict[str, Ranges] = {
    "d": ((0x30, 0x39),),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
}
_POSIX: dict[str, Ranges] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
#: Go's unicode.Categories (one-letter classes exclude unassigned code points, as Go).
_CATEGORIES = frozenset(
    "C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps "
    "S Sc Sk Sm So Z Zl Zp Zs".split())
_SIMPLE_ESCAPES = {"a": 0x07, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_HINTS = {
    "Z": "RE2 has no \\Z; use \\z for the end of the text",
    "u": "RE2 has no \\u escape; use \\x{...}",
    "U": "RE2 has no \\U escape; use \\x{...}",
    "G": "RE2 has no \\G", "K": "RE2 has no \\K", "R": "RE2 has no \\R",
    "h": "RE2 has no \\h", "X": "RE2 has no \\X", "N": "RE2 has no \\N",
    "e": "RE2 has no \\e; use \\x1b", "c": "RE2 has no control escapes \\cX",
    "C": "RE2 does not support \\C (any byte)",
}


class RE2Error(ValueError):
    """A pattern RE2 (Go's regexp) refuses, or that Python cannot express.

    ``str()`` reads like Go's error: ``error parsing regexp: <what>: `<where>```.
    """

    def __init__(self, pattern: str, what: str, where: str = "") -> None:
        self.pattern = pattern
        self.what = what
        self.where = where
        super().__init__(f"error parsing regexp: {what}" + (f": `{where}`" if where else ""))


@dataclass(frozen=True)
class Translation:
    """A Go pattern and its Python equivalent.

    ``group_names[i]`` is Go's name for capturing group ``i`` (``""`` when
    unnamed; index 0 is the whole match), the same numbering Python uses.
    """

    source: str
    python: str
    group_names: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def _category_table() -> dict[str, Ranges]:
    """Code point ranges of every Unicode general category (one pass, cached)."""
    spans: dict[str, list[list[int]]] = {}
    for cp in range(_MAX_RUNE + 1):
        cat = unicodedata.category(chr(cp))
        for key in (cat, cat[0]) if cat != "Cn" else ():
            lst = spans.setdefault(key, [])
            if lst and lst[-1][1] == cp - 1:
                lst[-1][1] = cp
            else:
                lst.append([cp, cp])
    return {k: tuple((a, b) for a, b in v) for k, v in spans.items()}


def _normalize(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Ranges | list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in _normalize(list(ranges)):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _esc(cp: int) -> str:
    """One code point as Python pattern text that means only that code point."""
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if 0x21 <= cp <= 0x7E:
        return "\\" + chr(cp)          # escaped ASCII punctuation is itself in Python
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _class_text(ranges: list[tuple[int, int]], negated: bool) -> str:
    norm = _normalize(ranges)
    if not negated and len(norm) == 1 and norm[0][0] == norm[0][1]:
        return _esc(norm[0][0])
    if negated and not norm:
        return r"[\x00-\U0010ffff]"
    if not negated and not norm:
        return r"[^\x00-\U0010ffff]"
    body = "".join(_esc(a) if a == b else f"{_esc(a)}-{_esc(b)}" for a, b in norm)
    return f"[{'^' if negated else ''}{body}]"


@dataclass
class _Item:
    """One atom of a concatenation, as Python text."""

    text: str
    bare: bool          # usable as is before a quantifier
    rep: int = 1        # largest product of nested {n,m} counts inside


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0
        self.flags = 0
        self.names: list[str] = [""]
        self.py_names: set[str] = set()
        self.depth = 0

    # -- helpers ------------------------------------------------------------
    def err(self, what: str, where: str = "") -> RE2Error:
        return RE2Error(self.s, what, where)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def fold(self, text: str, flags: int) -> str:
        return f"(?i:{text})" if flags & _I else text

    # -- structure ------------------------------------------------------------
    def parse(self) -> str:
        text, _ = self.alternation(closing=False, start=0)
        return text

    def alternation(self, *, closing: bool, start: int) -> tuple[str, int]:
        """Parse up to the matching ``)`` (consumed) or the end; returns (text, rep)."""
        saved = self.flags
        alts: list[str] = []
        seq: list[_Item] = []
        done: list[_Item] = []      # items of the finished alternatives
        last_repeat = -1            # index where the previous repetition operator began
        while True:
            c = self.peek()
            if c == "":
                if closing:
                    raise self.err("missing closing )", self.s[start:])
                break
            if c == ")":
                if not closing:
                    raise self.err("unexpected )", self.s)
                self.i += 1
                break
            if c == "|":
                self.i += 1
                alts.append("".join(it.text for it in seq))
                done.extend(seq)
                seq = []
                last_repeat = -1
                continue
            op_start = self.i
            if c in "*+?" or (c == "{" and self._repeat_ahead() is not None):
                self.quantifier(seq, last_repeat)
                last_repeat = op_start
                continue
            seq.extend(self.atom())
            last_repeat = -1
        alts.append("".join(it.text for it in seq))
        self.flags = saved
        return "|".join(alts), max((it.rep for it in done + seq), default=1)

    def _repeat_ahead(self) -> tuple[int, int, int] | None:
        """``{n}``, ``{n,}``, ``{n,m}`` at the cursor as Go's parseRepeat: (min, max, end)."""
        s, j = self.s, self.i + 1

        def number(k: int) -> tuple[int, int] | None:
            if k >= len(s) or not s[k].isdigit() or not s[k].isascii():
                return None
            if s[k] == "0" and k + 1 < len(s) and s[k + 1].isdigit() and s[k + 1].isascii():
                return None                 # leading zeros: not a repeat in Go
            e = k
            while e < len(s) and s[e].isascii() and s[e].isdigit():
                e += 1
            return (int(s[k:e]) if e - k <= 8 else -1), e
        got = number(j)
        if got is None:
            return None
        lo, j = got
        if j >= len(s):
            return None
        if s[j] == ",":
            j += 1
            if j >= len(s):
                return None
            if s[j] == "}":
                hi = -1
            else:
                got = number(j)
                if got is None:
                    return None
                hi, j = got
                if hi < 0:
                    lo = -1
        else:
            hi = lo
        if j >= len(s) or s[j] != "}":
            return None
        return lo, hi, j + 1

    def quantifier(self, seq: list[_Item], last_repeat: int) -> None:
        start = self.i
        c = self.s[start]
        lo = hi = 0
        if c == "{":
            got = self._repeat_ahead()
            assert got is not None
            lo, hi, self.i = got
            if lo < 0 or lo > MAX_REPEAT or hi > MAX_REPEAT or (hi >= 0 and lo > hi):
                raise self.err("invalid repeat count", self.s[start:self.i])
            q = f"{{{lo}}}" if lo == hi else (f"{{{lo},}}" if hi < 0 else f"{{{lo},{hi}}}")
        else:
            self.i += 1
            q = c
        lazy = bool(self.flags & _U)
        if self.peek() == "?":
            self.i += 1
            lazy = not lazy
        if last_repeat >= 0:
            op = self.s[last_repeat:self.i]
            hint = " (possessive quantifiers are not supported by RE2)" \
                if op[-1:] == "+" and len(op) > 1 else ""
            raise self.err("invalid nested repetition operator" + hint, op)
        if not seq:
            raise self.err("missing argument to repetition operator", self.s[start:self.i])
        item = seq[-1]
        rep = item.rep
        if c == "{":
            m = hi if hi >= 0 else lo
            if hi == 0:
                rep = 1                     # x{0}: Go does not look inside
            elif m > 0:
                rep = item.rep * m
            if (lo >= 2 or hi >= 2) and rep > MAX_REPEAT:
                raise self.err("invalid repeat count", self.s[start:self.i])
        base = item.text if item.bare else f"(?:{item.text})"
        seq[-1] = _Item(base + q + ("?" if lazy else ""), False, rep)

    def atom(self) -> list[_Item]:
        c = self.s[self.i]
        flags = self.flags
        if c == "(":
            return self.group()
        if c == "[":
            ranges, negated = self.char_class()
            return [_Item(self.fold(_class_text(ranges, negated), flags), True)]
        if c == ".":
            self.i += 1
            return [_Item("(?s:.)" if flags & _S else ".", True)]
        if c == "^":
            self.i += 1
            return [_Item("(?m:^)" if flags & _M else r"\A", False)]
        if c == "$":
            self.i += 1
            return [_Item("(?m:$)" if flags & _M else r"\Z", False)]
        if c == "\\":
            return self.escape_atom()
        self.i += 1
        return [self.literal(ord(c), flags)]

    def literal(self, cp: int, flags: int) -> _Item:
        ch = chr(cp)
        cased = flags & _I and (ch.lower() != ch or ch.upper() != ch)
        return _Item(f"(?i:{_esc(cp)})" if cased else _esc(cp), True)

    def group(self) -> list[_Item]:
        start = self.i
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.err("expression nests too deeply")
        try:
            s = self.s
            if not s.startswith("(?", start):
                self.i += 1
                self.names.append("")
                inner, rep = self.alternation(closing=True, start=start)
                return [_Item(f"({inner})", True, rep)]
            rest = s[start + 2:start + 4]
            if rest.startswith("P<") or (rest.startswith("<") and rest[1:2] not in ("=", "!")):
                return [self.named_group(start)]
            refusals = {"=": "lookahead (?=re) is not supported by RE2",
                        "!": "negative lookahead (?!re) is not supported by RE2",
                        "<=": "lookbehind (?<=re) is not supported by RE2",
                        "<!": "negative lookbehind (?<!re) is not supported by RE2",
                        ">": "atomic groups (?>re) are not supported by RE2",
                        "#": "comments (?#...) are not supported by RE2",
                        "(": "conditionals (?(cond)...) are not supported by RE2",
                        "|": "branch reset groups (?|...) are not supported by RE2",
                        "P=": "named backreferences (?P=name) are not supported by RE2",
                        "P>": "recursion (?P>name) is not supported by RE2",
                        "R": "recursion (?R) is not supported by RE2"}
            for key, what in refusals.items():
                if rest.startswith(key):
                    raise self.err(what, s[start:start + 2 + len(key)])
            return self.flag_group(start)
        finally:
            self.depth -= 1

    def named_group(self, start: int) -> _Item:
        s = self.s
        begin = start + (4 if s.startswith("(?P<", start) else 3)
        end = s.find(">", begin)
        if end < 0:
            raise self.err("invalid named capture", s[start:])
        name = s[begin:end]
        if not name or not all(ch == "_" or (ch.isascii() and ch.isalnum()) for ch in name):
            raise self.err("invalid named capture", s[start:end + 1])
        self.i = end + 1
        self.names.append(name)
        if name.isidentifier() and name not in self.py_names:
            self.py_names.add(name)
            opener = f"(?P<{name}>"
        else:
            opener = "("            # duplicate or not a Python name: numbered only
        inner, rep = self.alternation(closing=True, start=start)
        return _Item(f"{opener}{inner})", True, rep)

    def flag_group(self, start: int) -> list[_Item]:
        s = self.s
        j = start + 2
        flags = self.flags
        negate = False
        saw = False
        while j < len(s):
            c = s[j]
            j += 1
            if c in _FLAG_BITS:
                bit = _FLAG_BITS[c]
                flags = flags & ~bit if negate else flags | bit
                saw = True
            elif c == "-" and not negate:
                negate, saw = True, False
            elif c in ":)":
                if negate and not saw:
                    break
                self.i = j
                if c == ")":
                    self.flags = flags          # until the end of the enclosing group
                    return []
                outer = self.flags
                self.flags = flags
                inner, rep = self.alternation(closing=True, start=start)
                self.flags = outer
                return [_Item(f"(?:{inner})", True, rep)]
            else:
                if c == "x":
                    raise self.err("the x (verbose) flag is not supported by RE2", s[start:j])
                break
        raise self.err("invalid or unsupported Perl syntax", s[start:j])

    # -- escapes ------------------------------------------------------------
    def escape_atom(self) -> list[_Item]:
        s, start, flags = self.s, self.i, self.flags
        nxt = self.peek(1)
        if nxt == "":
            raise self.err("trailing backslash at end of expression")
        simple = {"A": r"\A", "z": r"\Z", "b": r"(?a:\b)", "B": r"(?a:\B)"}
        if nxt in simple:
            self.i += 2
            return [_Item(simple[nxt], False)]
        if nxt == "Q":
            end = s.find("\\E", start + 2)
            lit = s[start + 2:] if end < 0 else s[start + 2:end]
            self.i = len(s) if end < 0 else end + 2
            return [self.literal(ord(ch), flags) for ch in lit]
        got = self.class_escape()
        if got is not None:
            return [_Item(self.fold(_class_text(list(got), False), flags), True)]
        return [self.literal(self.char_escape(), flags)]

    def class_escape(self) -> Ranges | None:
        """``\\d \\s \\w \\D \\S \\W \\pX \\p{Name} \\PX`` at the cursor, else None."""
        s, start = self.s, self.i
        c = self.peek(1)
        if c.lower() in _PERL:
            self.i += 2
            ranges = _PERL[c.lower()]
            return tuple(_negate(ranges)) if c.isupper() else ranges
        if c not in ("p", "P"):
            return None
        negated = c == "P"
        j = start + 2
        if j >= len(s):
            raise self.err("invalid character class range", s[start:])
        if s[j] == "{":
            end = s.find("}", j)
            if end < 0:
                raise self.err("invalid character class range", s[start:])
            name, self.i = s[j + 1:end], end + 1
        else:
            name, self.i = s[j], j + 1
        if name.startswith("^"):
            negated, name = not negated, name[1:]
        if name == "Any":
            ranges: Ranges = ((0, _MAX_RUNE),)
        elif name in _CATEGORIES:
            ranges = _category_table().get(name, ())
        else:
            raise self.err(f"\\p{{{name}}} cannot be translated: Python's re has no Unicode "
                           "script or property classes (only general categories such as "
                           "\\pL, \\p{Lu}, \\p{Nd})", s[start:self.i])
        return tuple(_negate(ranges)) if negated else ranges

    def char_escape(self) -> int:
        """A single-character escape at the cursor (Go's parseEscape)."""
        s, start = self.s, self.i
        j = start + 1
        if j >= len(s):
            raise self.err("trailing backslash at end of expression")
        c = s[j]
        j += 1

        def octal_digit(k: int) -> bool:
            return k < len(s) and "0" <= s[k] <= "7"
        if "1" <= c <= "7" and not octal_digit(j) or c in "89":
            raise self.err("invalid escape sequence (backreferences are not supported by RE2)",
                           s[start:j])
        if "0" <= c <= "7":
            value = ord(c) - 0x30
            for _ in range(2):
                if not octal_digit(j):
                    break
                value = value * 8 + ord(s[j]) - 0x30
                j += 1
            self.i = j
            return value
        if c.isascii() and not c.isalnum():
            self.i = j
            return ord(c)
        if c == "x":
            if j < len(s) and s[j] == "{":
                end = s.find("}", j)
                digits = s[j + 1:end] if end > 0 else ""
                if end > 0 and digits and all(d in "0123456789abcdefABCDEF" for d in digits) \
                        and int(digits, 16) <= _MAX_RUNE:
                    self.i = end + 1
                    return int(digits, 16)
                raise self.err("invalid escape sequence", s[start:(end + 1) if end > 0 else len(s)])
            digits = s[j:j + 2]
            if len(digits) == 2 and all(d in "0123456789abcdefABCDEF" for d in digits):
                self.i = j + 2
                return int(digits, 16)
            raise self.err("invalid escape sequence", s[start:j + 2])
        if c in _SIMPLE_ESCAPES:
            self.i = j
            return _SIMPLE_ESCAPES[c]
        hint = _HINTS.get(c)
        raise self.err("invalid escape sequence" + (f" ({hint})" if hint else ""), s[start:j])

    # -- classes ------------------------------------------------------------
    def char_class(self) -> tuple[list[tuple[int, int]], bool]:
        s, start = self.s, self.i
        self.i += 1
        negated = False
        if self.peek() == "^":
            negated = True
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.peek()
            if c == "":
                raise self.err("missing closing ]", s[start:])
            if c == "]" and not first:
                self.i += 1
                return ranges, negated
            first = False
            if s.startswith("[:", self.i):
                end = s.find(":]", self.i + 2)
                if end >= 0:
                    name = s[self.i + 2:end]
                    neg = name.startswith("^")
                    cls = _POSIX.get(name[1:] if neg else name)
                    if cls is None:
                        raise self.err("invalid character class range", s[self.i:end + 2])
                    ranges.extend(_negate(cls) if neg else cls)
                    self.i = end + 2
                    continue
            if c == "\\":
                got = self.class_escape()
                if got is not None:
                    ranges.extend(got)
                    continue
            rng_start = self.i
            lo = self.class_char(start)
            hi = lo
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                hi = self.class_char(start)
                if hi < lo:
                    raise self.err("invalid character class range", s[rng_start:self.i])
            ranges.append((lo, hi))

    def class_char(self, class_start: int) -> int:
        c = self.peek()
        if c == "":
            raise self.err("missing closing ]", self.s[class_start:])
        if c == "\\":
            return self.char_escape()
        self.i += 1
        return ord(c)


def translate_re2(pattern: str) -> Translation:
    """Translate a Go regular expression; :class:`RE2Error` if RE2 would refuse it."""
    p = _Parser(pattern)
    python = p.parse()
    return Translation(pattern, python, tuple(p.names))


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    python = translate_re2(pattern).python
    try:
        return re.compile(python)
    except (re.error, RecursionError, OverflowError) as exc:
        raise RE2Error(pattern, f"cannot be expressed as a Python regular expression ({exc})") \
            from None


def compile_re2(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) pattern as an equivalent Python pattern.

    Matching semantics are Go's ``regexp.Compile`` (leftmost-first, Perl
    flags): use ``.search()`` for Go's ``MatchString``; groups are numbered
    as in Go. Raises :class:`RE2Error` (a ``ValueError``) for what RE2 refuses.
    """
    return _compile(pattern)
