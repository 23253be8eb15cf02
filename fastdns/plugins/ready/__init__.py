"""The ``ready`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: How it is served: the coordinator's HTTP endpoint.
PLUGIN = Plugin()
