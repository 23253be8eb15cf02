"""The ``nsid`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: A block flag: the engine (and the worker, for answers written in Python) adds the
#: NSID option to answers whose query carried one.
PLUGIN = Plugin(flags=lambda server, conf: {"nsid": conf.payload})
