"""The ``local`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: Answered by the C engine at the plugin's place in the chain (a stage of its own).
PLUGIN = Plugin(answers=True, engine=lambda server, conf: [
    {"kind": "local", "localhost_prefix": bool(conf.localhost_prefix)}])
