"""``local [{ localhost_prefix on|off }]``: answer localhost and loopback names locally.

No arguments. Several ``local`` lines in a server block are one plugin, as in
CoreDNS: the last ``localhost_prefix`` written wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, expect_args

__all__ = ["LocalConf", "parse", "merge", "ONCE"]

ONCE = False  # CoreDNS folds every local line of a block into one plugin


@dataclass(frozen=True)
class LocalConf:
    """``localhost_prefix``: whether ``localhost.<anything>`` names are answered
    like names under ``localhost.`` (CoreDNS's legacy behaviour, on by default).

    A single line's conf holds None when the line does not say; the conf in a
    plan (after :func:`merge`) always holds True or False.
    """

    localhost_prefix: bool | None = True


def parse(d: Dispenser) -> LocalConf:
    """Parse one ``local`` directive."""
    expect_args(d.name, d.args, 0, 0, "local")
    prefix: bool | None = None
    for sub in d.block():
        if sub.name.text != "localhost_prefix":
            raise d.unknown(sub)
        expect_args(sub.name, sub.args, 1, 1, "localhost_prefix on|off")
        value = sub.args[0].text
        if value not in ("on", "off"):
            raise sub.args[0].error(f"localhost_prefix expects 'on' or 'off', got {value!r}")
        prefix = value == "on"
    return LocalConf(prefix)


def merge(confs: list[LocalConf]) -> LocalConf:
    """Every ``local`` line of a server block as one conf: the last setting given wins."""
    prefix = True
    for c in confs:
        if c.localhost_prefix is not None:
            prefix = c.localhost_prefix
    return LocalConf(prefix)
