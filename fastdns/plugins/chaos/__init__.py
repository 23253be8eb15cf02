"""The ``chaos`` plugin (see README.md; settings in conf.py).

The smallest served plugin, and the worked example of docs/plugins.md: its
answers are fixed when the Corefile is loaded, so they are compiled once into
a table the engine answers class CH queries from; nothing of it runs per query.
"""

from __future__ import annotations

import socket
from typing import Any

from fastdns.plugins.runtime import Plugin

CH, TXT = 3, 16


def answers(conf: Any, hostname: str) -> dict[str, list[str]]:
    """The TXT strings each CH name answers (CoreDNS's chaos names)."""
    from fastdns.plugins.chaos.conf import trim

    host = [trim(hostname)]
    return {"version.bind.": [conf.version], "version.server.": [conf.version],
            "authors.bind.": list(conf.authors), "hostname.bind.": host, "id.server.": host}


def _entries(conf: Any) -> dict[bytes, bytes]:
    import dns.message
    import dns.rrset

    from fastdns import wire
    from fastdns.compiled import pack_bodies

    out = {}
    for name, texts in answers(conf, socket.gethostname() or "localhost").items():
        q = dns.message.make_query(name, TXT, CH, use_edns=False)
        r = dns.message.make_response(q)
        r.flags &= ~0x0400                                  # not authoritative, as CoreDNS
        quoted = ['"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in texts]
        r.answer.append(dns.rrset.from_text_list(name, 0, CH, TXT, quoted))
        out[wire.name_from_text(name)] = pack_bodies({TXT: wire.body_from_response(r.to_wire())})
    return out


def source(ctx: Any) -> Any:
    """The table of the five CH names (coordinator side)."""
    from fastdns.coordinator.answers import StaticSource

    return StaticSource(ctx, _entries(ctx.conf))


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    # class CH only; any name of the block is looked up; what is not one of the five
    # names (or not TXT) goes to the next plugin
    return [{"kind": "table", "qclass": CH, "zones": [], "any_name": True, "pass_qtype": 0}]


PLUGIN = Plugin(answers=True, engine=_stages, source="fastdns.plugins.chaos:source")
