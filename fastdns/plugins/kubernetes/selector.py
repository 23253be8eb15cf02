"""Kubernetes label selectors (``labels EXPRESSION``), evaluated locally.

The live source passes the expression to the API server as ``labelSelector``;
the snapshot source has no server, so the same expression is matched here.
Grammar (kubernetes.io "Labels and Selectors"): comma-separated requirements
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from fastdns.errors import ConfigError

__all__ = ["parse_selector", "selector_keys", "Selector"]

Selector = Callable[[Mapping[str, str] | None], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_REQ = re.compile(
    rf"^\s*(?:(?P<not>!)\s*(?P<nkey>{_KEY})"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|!=|=)\s*(?P<val>[-A-Za-z0-9_.]*)"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<vals>[^)]*)\))?)\s*$"
)


def _split(expr: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_selector(expr: str | None) -> Selector:
    """Compile ``expr`` into a predicate over an object's labels.

    ``None`` or an empty expression matches everything.  A malformed
    expression raises :class:`ConfigError` naming it.
    """
    if not expr or not expr.strip():
        return lambda labels: True
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split(expr):
        m = _REQ.match(part)
        if not m:
            raise ConfigError(f"unable to parse label selector {expr!r} at {part.strip()!r}")
        if m["nkey"]:
            k = m["nkey"]
            checks.append(lambda lb, k=k: k not in lb)
        elif m["op"]:
            k, v = m["key"], m["val"]
            if m["op"] == "!=":
                checks.append(lambda lb, k=k, v=v: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=k, v=v: lb.get(k) == v)
        elif m["setop"]:
            k = m["key"]
            vals = frozenset(x.strip() for x in m["vals"].split(",") if x.strip())
            if m["setop"] == "in":
                checks.append(lambda lb, k=k, vals=vals: lb.get(k) in vals)
            else:
                checks.append(lambda lb, k=k, vals=vals: lb.get(k) not in vals)
        else:
            k = m["key"]
            checks.append(lambda lb, k=k: k in lb)

    def match(labels: Mapping[str, str] | None) -> bool:
        lb = labels or {}
        return all(c(lb) for c in checks)

    return match


def selector_keys(expr: str | None) -> frozenset[str]:
    """The label keys ``expr`` reads (what an object must keep to be matched);
    a malformed expression raises :class:`ConfigError` as :func:`parse_selector`."""
    if not expr or not expr.strip():
        return frozenset()
    keys = set()
    for part in _split(expr):
        m = _REQ.match(part)
        if not m:
            raise ConfigError(f"unable to parse label selector {expr!r} at {part.strip()!r}")
        keys.add(m["nkey"] or m["key"])
    return frozenset(keys)
