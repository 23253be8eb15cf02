"""The ``hosts`` plugin (see README.md; settings in conf.py)."""

from typing import Any

from fastdns.plugins.runtime import Plugin


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    # PTR names outside the zones are answered too (any_name); a PTR question
    # without an entry always goes on (pass_qtype); "*.<parent>" entries answer
    # the names below them (wildcard); absent names SERVFAIL unless fallthrough.
    return [{"kind": "table", "zones": conf.zones, "any_name": True, "wildcard": True,
             "pass_qtype": 12, "fallthrough": conf.fallthrough}]


#: A table stage compiled from the hosts file and inline entries (source.HostsSource).
PLUGIN = Plugin(answers=True, engine=_stages, source="fastdns.plugins.hosts.source:HostsSource")
