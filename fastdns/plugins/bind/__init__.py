"""The ``bind`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: How it is served: the listeners the coordinator plans and the workers bind.
PLUGIN = Plugin()
