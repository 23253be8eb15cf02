"""The ``any`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: The engine answers qtype ANY itself (RFC 8482 HINFO) at the plugin's place in the chain.
PLUGIN = Plugin(answers=True, engine=lambda server, conf: [{"kind": "any"}])
