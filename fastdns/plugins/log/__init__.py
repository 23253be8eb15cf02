"""The ``log`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: How it is served: the engine logs the block's answers to the worker's query log.
PLUGIN = Plugin(flags=lambda server, conf: {"log": True})
