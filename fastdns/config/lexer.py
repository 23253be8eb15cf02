"""Corefile lexer: text → tokens that know their file, line and column.

The rules are Caddy's (the Corefile's parent format), as CoreDNS applies them:

* tokens are separated by whitespace; a token that starts with ``"`` runs to
  the closing quote and may contain whitespace and newlines; inside quotes
  only ``\\"`` is an escape (any other backslash is kept as is);
* ``#`` starts a comment up to the end of the line, even in the middle of an
  unquoted token (``foo#bar`` is the token ``foo``);
* a leading byte order mark is ignored; ``\\r`` is ignored;
* environment references ``{$NAME}`` and ``{%NAME%}`` are replaced by the
  variable's value (the empty string when unset), see :func:`substitute_env`.

Lines and columns are 1-based; columns count characters, not bytes.
"""

from __future__ import annotations

import re

from collections.abc import Mapping
from dataclasses import dataclass

from fastdns.errors import ConfigError

__all__ = ["Token", "tokenize", "substitute_env"]


@dataclass(frozen=True, slots=True)
class Token:
    """One Corefile word with where it was written.

    ``end_line`` differs from ``line`` only for a quoted token spanning lines.
    ``quoted`` tells a literal ``"{"`` from a block brace. ``chain`` lists the
    import sources (files or ``(snippet)`` names) this token was brought in
    through, outermost first; it is used to detect import loops.
    """

    text: str
    file: str
    line: int
    column: int
    end_line: int
    quoted: bool = False
    chain: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """``file:line:col`` of the token."""
        return f"{self.file}:{self.line}:{self.column}"

    def is_brace(self, brace: str) -> bool:
        """True if this is an unquoted ``{`` or ``}`` (``brace`` says which)."""
        return not self.quoted and self.text == brace

    def error(self, message: str) -> ConfigError:
        """A :class:`ConfigError` located at this token."""
        return ConfigError(message, self.file, self.line, self.column)


_ENV_REF = re.compile(r"\{%([^%]+?)%\}|\{\$([^}]+?)\}")


def substitute_env(text: str, env: Mapping[str, str]) -> str:
    """Replace ``{%NAME%}`` and ``{$NAME}`` references in one token's text.

    One pass, left to right: a value is inserted as it is and never scanned
    for references itself (``EVIL='{$EVIL}x'`` cannot make it grow forever,
    where Caddy's repeated scan, which CoreDNS inherits, would)."""
    if "{" not in text:
        return text
    return _ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def tokenize(text: str, filename: str = "Corefile", *,
             env: Mapping[str, str] | None = None,
             chain: tuple[str, ...] = ()) -> list[Token]:
    """Split Corefile ``text`` into tokens; substitute ``env`` if given.

    Raises :class:`ConfigError` for a quote that is never closed.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    tokens: list[Token] = []
    line, col = 1, 0
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        i += 1
        if ch == "\n":
            line += 1
            col = 0
            continue
        col += 1
        if ch == "\r" or ch.isspace():
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        start_line, start_col = line, col
        if ch == '"':
            buf: list[str] = []
            closed = False
            while i < n:
                c = text[i]
                i += 1
                if c == "\n":
                    line += 1
                    col = 0
                else:
                    col += 1
                if c == "\\" and i < n and text[i] == '"':
                    buf.append('"')
                    i += 1
                    col += 1
                    continue
                if c == '"':
                    closed = True
                    break
                buf.append(c)
            if not closed:
                raise ConfigError("unterminated quoted string", filename, start_line, start_col)
            tokens.append(Token("".join(buf), filename, start_line, start_col, line, True, chain))
            continue
        j = i - 1
        while i < n and not text[i].isspace() and text[i] != "#":
            i += 1
        col += i - j - 1
        tokens.append(Token(text[j:i], filename, start_line, start_col, start_line, False, chain))
    if env is not None:
        tokens = [t if "{" not in t.text else
                  Token(substitute_env(t.text, env), t.file, t.line, t.column, t.end_line,
                        t.quoted, t.chain)
                  for t in tokens]
    return tokens
