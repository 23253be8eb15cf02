"""The ``loadbalance`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: How it is served: the engine shuffles the block's A/AAAA answers.
PLUGIN = Plugin(flags=lambda server, conf: {"loadbalance": True})
