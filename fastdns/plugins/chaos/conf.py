"""``chaos [VERSION] [AUTHORS...]``: answer CH-class TXT queries about the server.

With no argument the version is ``fastdns-<version>`` and the authors are
:data:`DEFAULT_AUTHORS`; with one argument only the version changes; with
more, the authors are the remaining arguments, duplicates removed and sorted
(as CoreDNS). Every string is cut to 255 bytes, the most a TXT string holds.
No block properties.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastdns._version import __version__
from fastdns.config.dispenser import Dispenser

__all__ = ["ChaosConf", "parse", "ONCE", "DEFAULT_VERSION", "DEFAULT_AUTHORS", "trim"]

ONCE = True  # CoreDNS reads only the first chaos line of a block; a second one is refused
DEFAULT_VERSION = f"fastdns-{__version__}"
#: What ``authors.bind`` answers when the Corefile names no authors (CoreDNS
#: answers its own maintainers' GitHub handles).
DEFAULT_AUTHORS: tuple[str, ...] = ("fastdns",)
TXT_MAX = 255


def trim(text: str) -> str:
    """``text`` cut so that its UTF-8 encoding fits one TXT string (255 bytes),
    never in the middle of a character."""
    raw = text.encode()
    if len(raw) <= TXT_MAX:
        return text
    return raw[:TXT_MAX].decode(errors="ignore")


@dataclass(frozen=True)
class ChaosConf:
    """What ``version.bind``/``version.server`` (``version``) and ``authors.bind``
    (``authors``, one TXT record each) answer. ``hostname.bind``/``id.server``
    answer the host's name, read when the Corefile is loaded."""

    version: str = DEFAULT_VERSION
    authors: tuple[str, ...] = DEFAULT_AUTHORS


def parse(d: Dispenser) -> ChaosConf:
    """Parse ``chaos [VERSION] [AUTHORS...]``."""
    for sub in d.block():
        raise d.unknown(sub)
    args = [t.text for t in d.args]
    if not args:
        return ChaosConf()
    if len(args) == 1:
        return ChaosConf(version=trim(args[0]))
    return ChaosConf(version=trim(args[0]), authors=tuple(sorted({trim(a) for a in args[1:]})))
