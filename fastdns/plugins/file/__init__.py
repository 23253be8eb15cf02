"""The ``file`` plugin (see README.md; settings in conf.py, answers in source.py)."""

from typing import Any

from fastdns.plugins.runtime import Plugin


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    # One table for the line's zones: absent names are resolved in C from their
    # closest encloser (referral under a cut, *.<encloser>, the zone's NXDOMAIN);
    # AXFR/IXFR are REFUSED (no transfer plugin); fallthrough as CoreDNS's.
    return [{"kind": "table", "zones": list(conf.zones), "encloser": True, "refuse_xfr": True,
             "fallthrough": conf.fallthrough}]


#: A table stage compiled from the zone file (source.FileSource).
PLUGIN = Plugin(answers=True, engine=_stages, source="fastdns.plugins.file.source:FileSource")
