"""The ``minimal`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: A block flag: the engine (and the worker, for answers written in Python) drops the
#: authority and additional sections of successful answers.
PLUGIN = Plugin(flags=lambda server, conf: {"minimal": True})
