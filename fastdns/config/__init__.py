"""Corefile → :class:`Plan` (pure: no network, no processes).

>>> from fastdns.config import parse
>>> plan = parse(". { whoami }")
>>> plan.servers[0].zones, plan.servers[0].port
(('.',), 53)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastdns.config.build import build_plan
from fastdns.config.lexer import tokenize
from fastdns.config.parser import parse_tokens, read_file
from fastdns.config.plan import Listener, Plan, PluginConf, ServerPlan

__all__ = ["load", "parse", "Plan", "ServerPlan", "PluginConf", "Listener"]


def parse(text: str, *, filename: str = "Corefile", default_port: int = 53,
          env: Mapping[str, str] | None = None) -> Plan:
    """Parse Corefile ``text``; relative imports/files are taken from ``filename``'s directory.

    ``env`` replaces ``{$NAME}`` / ``{%NAME%}`` (default: the process environment).
    Raises :class:`fastdns.errors.ConfigError` (``file:line:col: message``).
    """
    env = os.environ if env is None else env
    blocks = parse_tokens(tokenize(text, filename, env=env, chain=(os.path.abspath(filename),)), env)
    return build_plan(blocks, filename, default_port)


def load(path: str, *, default_port: int = 53, env: Mapping[str, str] | None = None) -> Plan:
    """Read and parse the Corefile at ``path`` (see :func:`parse`)."""
    env = os.environ if env is None else env
    blocks = parse_tokens(read_file(path, env=env, chain=(os.path.abspath(path),)), env)
    return build_plan(blocks, path, default_port)
