"""``nsid [DATA...]``: the server identifier (RFC 5001) added to replies.

The arguments are joined with single spaces; with none, the host's name is
used (``localhost`` if it cannot be read), as CoreDNS. Once per server block;
no block properties.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from fastdns.config.dispenser import Dispenser
from fastdns.limits import NSID_MAX

__all__ = ["NsidConf", "parse", "ONCE", "default_nsid"]

ONCE = True  # CoreDNS: "this plugin can only be used once per Server Block"


def default_nsid() -> str:
    """The host's name, or ``localhost`` when it cannot be read (CoreDNS's default)."""
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"


@dataclass(frozen=True)
class NsidConf:
    """``data`` is the identifier as text; on the wire the NSID option holds its
    UTF-8 bytes (CoreDNS hex-encodes them into miekg/dns's ``Nsid`` field, which
    packs back to the same bytes)."""

    data: str = field(default_factory=default_nsid)

    @property
    def payload(self) -> bytes:
        """The NSID option's data as sent."""
        return self.data.encode()


def parse(d: Dispenser) -> NsidConf:
    """Parse ``nsid [DATA...]``."""
    for sub in d.block():
        raise d.unknown(sub)
    conf = NsidConf(" ".join(t.text for t in d.args)) if d.args else NsidConf(default_nsid())
    if len(conf.payload) > NSID_MAX:
        where = d.args[0] if d.args else d.name
        raise where.error(f"nsid: the identifier is {len(conf.payload)} bytes (at most {NSID_MAX})")
    return conf
