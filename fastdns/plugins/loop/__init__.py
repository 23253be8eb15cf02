"""The ``loop`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: How it is served: forward's worker side sends and watches the probe (fastdns.plugins.loop.detect).
PLUGIN = Plugin()
