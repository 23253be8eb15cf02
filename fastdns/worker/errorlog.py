"""The ``errors`` plugin in a worker: CoreDNS's error lines, with ``consolidate``.

An error a plugin meets while answering a query (every upstream failed, an
excepted name with nothing after ``forward``, ``max_concurrent`` exceeded…)
is reported as ``(block, query, rcode, text)``.  Blocks with ``errors`` log it
as CoreDNS's ``plugin/errors`` does::

    [ERROR] plugin/errors: 2 example.org. A: read udp 127.0.0.1:40000->127.0.0.1:53: i/o timeout

Blocks without ``errors`` stay quiet.  ``consolidate DURATION REGEXP [LEVEL]
[show_first]``: errors whose text matches REGEXP (searched anywhere, as Go's
``MatchString``; the first rule that matches wins) are counted; DURATION after
the first one, ``N errors like 'REGEXP' occurred in last DURATION`` is logged
at LEVEL.  With ``show_first`` the first error is logged at once (at LEVEL) and
the summary only when more followed.  ``debug`` lines are printed only when a
block has the ``debug`` plugin (CoreDNS's ``log.Debug``).

Lines are collected and written to standard output with one ``write`` per
worker-loop wakeup (:meth:`ErrorLogs.tick`); :meth:`ErrorLogs.close` writes
the summaries still pending (CoreDNS does so when the plugin stops).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import dns.rdatatype

from fastdns.config.plan import Plan
from fastdns.plugins.errors.conf import Consolidate, ErrorsConf

__all__ = ["ErrorLog", "ErrorLogs", "go_duration"]

_TAGS = {"error": "[ERROR]", "warning": "[WARNING]", "info": "[INFO]", "debug": "[DEBUG]"}


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String()`` prints it (``5m0s``, ``1.5s``, ``500ms``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size or unit == "ns":
                return sign + _frac(ns, size) + unit
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    out = f"{h}h{m}m" if h else (f"{m}m" if m else "")
    return sign + out + _frac(rest, 1_000_000_000) + "s"


def _frac(n: int, unit: int) -> str:
    whole, frac = divmod(n, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


class _Rule:
    __slots__ = ("count", "deadline", "level", "pattern", "period", "regexp", "show_first")

    def __init__(self, c: Consolidate) -> None:
        self.pattern = c.pattern
        self.regexp = re.compile(c.pattern)
        self.period = c.period
        self.level = c.level
        self.show_first = c.show_first
        self.count = 0
        self.deadline = 0.0


class ErrorLog:
    """One block's ``errors``: formats, consolidates, hands lines to ``emit``."""

    def __init__(self, conf: ErrorsConf, emit: Callable[[str], None], debug: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = [_Rule(c) for c in conf.consolidate]
        self.emit = emit
        self.debug = debug
        self.clock = clock

    def _line(self, level: str, text: str) -> None:
        if level == "debug" and not self.debug:
            return
        self.emit(f"{_TAGS[level]} plugin/errors: {text}\n")

    def error(self, rcode: int, qname: str, qtype: int, text: str) -> None:
        """One error met answering ``qname``/``qtype`` (answered with ``rcode``)."""
        level = "error"
        for rule in self.rules:
            if rule.regexp.search(text):
                rule.count += 1
                if rule.count > 1 or not rule.show_first:
                    if rule.count == 1:
                        rule.deadline = self.clock() + rule.period
                    return
                rule.deadline = self.clock() + rule.period
                level = rule.level
                break
        name = qname.lower() if qname.endswith(".") else qname.lower() + "."
        self._line(level, f"{rcode} {name} {dns.rdatatype.to_text(qtype)}: {text}")

    def tick(self, now: float | None = None, *, final: bool = False) -> None:
        """Log the summaries whose period is over (all pending ones when ``final``)."""
        if not self.rules:
            return
        now = self.clock() if now is None else now
        for rule in self.rules:
            if rule.count and (final or now >= rule.deadline):
                n, rule.count = rule.count, 0
                if n > 1 or not rule.show_first:
                    self._line(rule.level, f"{n} errors like '{rule.pattern}' occurred in last "
                                           f"{go_duration(rule.period)}")


class ErrorLogs:
    """Every block's ``errors`` plugin in one worker (``report`` is the miss path's hook)."""

    def __init__(self, plan: Plan, write: Callable[[str], Any] | None = None) -> None:
        self.pending: list[str] = []
        self.write = write
        debug = bool(plan.confs("debug"))
        self.blocks: dict[int, ErrorLog] = {}
        for bi, server in enumerate(plan.servers):
            conf = server.plugin("errors")
            if conf is not None:
                self.blocks[bi] = ErrorLog(conf, self.pending.append, debug)

    @property
    def enabled(self) -> bool:
        return bool(self.blocks)

    def report(self, block: int, q: Any, rcode: int, text: str) -> None:
        """An error answering ``q`` (a :class:`fastdns.wire.Query`) in ``block``."""
        log = self.blocks.get(block)
        if log is not None:
            log.error(rcode, q.qname, q.qtype, text)

    def tick(self, *, final: bool = False) -> None:
        """Due summaries, then write what is pending (one write)."""
        now = time.monotonic()
        for log in self.blocks.values():
            log.tick(now, final=final)
        if not self.pending:
            return
        data = "".join(self.pending)
        self.pending.clear()
        try:
            if self.write is not None:
                self.write(data)
            else:
                os.write(1, data.encode())
        except OSError:
            pass

    def close(self) -> None:
        """Stop: write every pending summary."""
        self.tick(final=True)
