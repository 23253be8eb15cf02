"""The ``bufsize`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: A block flag: UDP answers to EDNS clients are kept within SIZE bytes (fastdns never
#: answers UDP above 1232 bytes, so only smaller sizes change anything).
PLUGIN = Plugin(flags=lambda server, conf: {"bufsize": conf.size})
