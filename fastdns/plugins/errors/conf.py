"""``errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args, no_args, parse_duration

__all__ = ["ErrorsConf", "Consolidate", "parse", "ONCE"]

ONCE = True
LEVELS = ("warning", "error", "info", "debug")
MAX_REGEXP_LEN = 10_000


@dataclass(frozen=True)
class Consolidate:
    """Errors matching ``pattern`` are counted and logged once per ``period`` seconds."""

    period: float
    pattern: str
    level: str = "error"
    show_first: bool = False


@dataclass(frozen=True)
class ErrorsConf:
    """Where errors go (only stdout) and which are consolidated."""

    stacktrace: bool = False
    consolidate: tuple[Consolidate, ...] = ()


def parse(d: Dispenser) -> ErrorsConf:
    """Parse ``errors [stdout] { … }``."""
    expect_args(d.name, d.args, 0, 1, "errors [stdout]")
    if d.args and d.args[0].text != "stdout":
        raise d.args[0].error(f"invalid log file: {d.args[0].text!r} (only stdout)")
    stacktrace = False
    rules: list[Consolidate] = []
    for sub in d.block():
        if sub.name.text == "stacktrace":
            no_args(sub)
            stacktrace = True
        elif sub.name.text == "consolidate":
            a = sub.args
            expect_args(sub.name, a, 2, 4, "consolidate DURATION REGEXP [LEVEL] [show_first]")
            period = parse_duration(a[0], what="consolidate duration")
            if len(a[1].text) > MAX_REGEXP_LEN:
                raise a[1].error(f"regex pattern too long: {len(a[1].text)} > {MAX_REGEXP_LEN}")
            try:
                re.compile(a[1].text)
            except re.error as exc:
                raise a[1].error(f"invalid regular expression: {exc}") from None
            level, level_set, show_first = "error", False, False
            for opt in a[2:]:
                if opt.text in LEVELS:
                    if level_set:
                        raise opt.error("multiple log levels specified in consolidate")
                    if show_first:
                        raise opt.error("log level must come before show_first in consolidate")
                    level, level_set = opt.text, True
                elif opt.text == "show_first":
                    show_first = True
                else:
                    raise opt.error(f"unknown option in consolidate: {opt.text!r}")
            rules.append(Consolidate(period, a[1].text, level, show_first))
        else:
            raise d.unknown(sub)
    return ErrorsConf(stacktrace, tuple(rules))
