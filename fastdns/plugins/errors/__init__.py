"""The ``errors`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: How it is served: the worker's error log (fastdns.worker.errorlog), fed by its Python handlers.
PLUGIN = Plugin()
