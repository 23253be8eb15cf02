"""The ``whoami`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: Answered by the C engine from the client's socket address (a stage of its own).
PLUGIN = Plugin(answers=True, engine=lambda server, conf: [{"kind": "whoami"}])
