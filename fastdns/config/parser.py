"""Corefile tokens → server blocks of directives (syntax only, no plugin meaning).

Grammar (Caddy's, as CoreDNS reads it)::

    corefile   := (snippet | block)*
    snippet    := "(" NAME ")" "{" lines "}"
    block      := KEY ("," KEY | KEY)* "{" lines "}"      (keys on one line;
                                                           a trailing comma continues it)
               |  KEY+ lines EOF                          (a lone block without braces)
    lines      := (directive NEWLINE)*
    directive  := NAME ARG* ["{" lines "}"]               ("{" last on the line)

``import PATTERN`` at the start of a line (anywhere: between blocks, among
directives, inside a directive's block) is replaced by the snippet named
PATTERN, else by the tokens of the files that match the glob PATTERN,
relative to the importing file's directory. A pattern without a wildcard
must match a file. Import loops are detected by following each token's
import chain; total expansions are capped as in Caddy.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fastdns.config.lexer import Token, tokenize
from fastdns.errors import ConfigError
from fastdns.files import FileRefused, read_limited
from fastdns.limits import CONFIG_FILE_MAX

__all__ = ["Directive", "RawBlock", "parse_tokens", "read_file"]

MAX_SNIPPET_EXPANSIONS = 10_000
MAX_FILE_EXPANSIONS = 1_000
MAX_IMPORT_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Directive:
    """``name arg… [{ sub-directives }]`` with every token kept for errors."""

    name: Token
    args: tuple[Token, ...]
    block: tuple["Directive", ...] | None = None
    open_brace: Token | None = None


@dataclass(frozen=True, slots=True)
class RawBlock:
    """A server block before meaning: its key tokens and its directives."""

    keys: tuple[Token, ...]
    directives: tuple[Directive, ...]


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of a Corefile or imported file: a regular file of at most
    :data:`~fastdns.limits.CONFIG_FILE_MAX` bytes of UTF-8, else :class:`ConfigError`
    naming the file (``import /dev/zero`` must not read forever)."""
    name = os.fspath(path)
    try:
        data = read_limited(name, CONFIG_FILE_MAX, "configuration file")
    except FileRefused as exc:
        raise ConfigError(f"cannot read {name}: {exc}", name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {name}: {exc.strerror or exc}", name) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {name}: not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})", name) from None


def read_file(path: str, *, env: Mapping[str, str] | None, chain: tuple[str, ...] = (),
              at: Token | None = None) -> list[Token]:
    """Read and tokenize one file; errors are located at the importing token ``at``."""
    try:
        text = read_config_text(path)
    except ConfigError as exc:
        if at is not None:
            raise at.error(exc.message) from None
        raise
    return tokenize(text, path, env=env, chain=chain)


class _Parser:
    def __init__(self, tokens: list[Token], env: Mapping[str, str] | None) -> None:
        self.toks = tokens
        self.i = 0
        self.env = env
        self.snippets: dict[str, list[Token]] = {}
        self.snippet_expansions = 0
        self.file_expansions = 0

    # -- cursor helpers ---------------------------------------------------
    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def same_line(self, a: Token, b: Token) -> bool:
        return a.file == b.file and a.end_line == b.line and a.chain == b.chain

    def starts_line(self, idx: int) -> bool:
        return idx == 0 or not self.same_line(self.toks[idx - 1], self.toks[idx])

    def line_rest(self) -> list[Token]:
        """Tokens after the current one (already consumed) on the same line."""
        out: list[Token] = []
        while self.i < len(self.toks) and self.i > 0 and \
                self.same_line(self.toks[self.i - 1], self.toks[self.i]):
            out.append(self.toks[self.i])
            self.i += 1
        return out

    # -- import -----------------------------------------------------------
    def maybe_import(self) -> bool:
        """If the current token starts an ``import`` line, splice it; return True."""
        tok = self.peek()
        if tok is None or tok.quoted or tok.text != "import" or not self.starts_line(self.i):
            return False
        start = self.i
        self.i += 1
        args = self.line_rest()
        if len(args) != 1:
            raise tok.error("import takes exactly one argument (a snippet name, file or glob)")
        pattern = args[0].text
        if pattern == "":
            raise args[0].error("import requires a non-empty file path or snippet name")
        imported = self.expand_import(tok, pattern)
        self.toks[start:self.i] = imported
        self.i = start
        return True

    def expand_import(self, at: Token, pattern: str) -> list[Token]:
        if len(at.chain) >= MAX_IMPORT_DEPTH:
            raise at.error(f"maximum import depth ({MAX_IMPORT_DEPTH}) exceeded")
        if pattern in self.snippets:
            key = f"({pattern})"
            if key in at.chain:
                raise at.error(f"import loop: snippet {pattern!r} imports itself "
                               f"({' -> '.join(at.chain + (key,))})")
            self.snippet_expansions += 1
            if self.snippet_expansions > MAX_SNIPPET_EXPANSIONS:
                raise at.error(f"maximum snippet import count ({MAX_SNIPPET_EXPANSIONS}) exceeded")
            chain = at.chain + (key,)
            return [Token(t.text, t.file, t.line, t.column, t.end_line, t.quoted, chain)
                    for t in self.snippets[pattern]]
        base = os.path.dirname(os.path.abspath(at.file))
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        wild = any(c in full for c in "*?[")
        if full.count("*") > 1 or full.count("?") > 1 or ("[" in full and "]" in full):
            raise at.error(f"import glob pattern may contain only one wildcard: {pattern}")
        matches = sorted(glob.glob(full)) if wild else ([full] if os.path.exists(full) else [])
        if not matches and not wild:
            raise at.error(f"file to import not found: {pattern}")
        out: list[Token] = []
        for path in matches:
            path = os.path.abspath(path)
            if os.path.isdir(path):
                raise at.error(f"cannot import {pattern}: {path} is a directory")
            seen = at.chain
            if path in seen:
                names = [os.path.basename(p) for p in seen + (path,) if not p.startswith("(")]
                raise at.error(f"import loop: {' -> '.join(names)}")
            self.file_expansions += 1
            if self.file_expansions > MAX_FILE_EXPANSIONS:
                raise at.error(f"maximum file import count ({MAX_FILE_EXPANSIONS}) exceeded")
            out.extend(read_file(path, env=self.env, chain=at.chain + (path,), at=at))
        return out

    # -- grammar ----------------------------------------------------------
    def parse_all(self) -> list[RawBlock]:
        blocks: list[RawBlock] = []
        while self.peek() is not None:
            if self.maybe_import():
                continue
            block = self.parse_block()
            if block is not None:
                blocks.append(block)
        return blocks

    def parse_keys(self) -> list[Token]:
        keys: list[Token] = []
        first = self.toks[self.i]
        expecting = True
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            if keys and not expecting and not self.same_line(self.toks[self.i - 1], tok):
                break
            if tok.is_brace("{"):
                break
            if tok.is_brace("}"):
                raise tok.error("unexpected '}' (no block is open)")
            self.i += 1
            text = tok.text
            expecting = text.endswith(",")
            if expecting:
                text = text[:-1]
            if text:
                keys.append(Token(text, tok.file, tok.line, tok.column, tok.end_line,
                                  tok.quoted, tok.chain))
        if expecting and self.peek() is None:
            raise first.error("unexpected end of file after ',' in server block keys")
        return keys

    def parse_block(self) -> RawBlock | None:
        first = self.toks[self.i]
        keys = self.parse_keys()
        brace = self.peek()
        if brace is not None and brace.is_brace("{") and not keys:
            raise brace.error("server block has no zone before '{'")
        if len(keys) == 1 and keys[0].text.startswith("(") and keys[0].text.endswith(")") \
                and len(keys[0].text) > 2:
            self.parse_snippet(keys[0])
            return None
        if not keys:
            raise first.error("expected a server block key (zone)")
        if brace is not None and brace.is_brace("{"):
            self.i += 1
            directives = self.parse_lines(brace)
        else:
            directives = self.parse_lines(None)  # a lone block without braces, to EOF
        return RawBlock(tuple(keys), tuple(directives))

    def parse_snippet(self, key: Token) -> None:
        name = key.text[1:-1]
        if name in self.snippets:
            raise key.error(f"snippet {name!r} is already defined")
        brace = self.peek()
        if brace is None or not brace.is_brace("{"):
            raise key.error(f"snippet ({name}) must be followed by '{{'")
        self.i += 1
        depth = 1
        body: list[Token] = []
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            self.i += 1
            if tok.is_brace("{"):
                depth += 1
            elif tok.is_brace("}"):
                depth -= 1
                if depth == 0:
                    self.snippets[name] = body
                    return
            body.append(tok)
        raise brace.error(f"'{{' of snippet ({name}) is never closed")

    def parse_lines(self, opener: Token | None) -> list[Directive]:
        """Directives up to the ``}`` matching ``opener`` (or EOF if None)."""
        out: list[Directive] = []
        while True:
            tok = self.peek()
            if tok is None:
                if opener is not None:
                    raise opener.error("'{' is never closed (unexpected end of file)")
                return out
            if tok.is_brace("}"):
                if opener is None:
                    raise tok.error("unexpected '}' (no block is open)")
                self.i += 1
                return out
            if self.maybe_import():
                continue
            if tok.is_brace("{"):
                raise tok.error("unexpected '{' (a block must open at the end of a directive's line)")
            self.i += 1
            args: list[Token] = []
            block = None
            brace = None
            while self.i < len(self.toks) and self.same_line(self.toks[self.i - 1], self.toks[self.i]):
                nxt = self.toks[self.i]
                if nxt.is_brace("}"):
                    break  # closes the enclosing block on the same line
                self.i += 1
                if nxt.is_brace("{"):
                    brace = nxt
                    block = tuple(self.parse_lines(nxt))
                    break
                args.append(nxt)
            out.append(Directive(tok, tuple(args), block, brace))


def parse_tokens(tokens: list[Token], env: Mapping[str, str] | None = None) -> list[RawBlock]:
    """Group tokens into server blocks, expanding snippets and imports."""
    return _Parser(list(tokens), env).parse_all()
