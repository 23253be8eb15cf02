"""The ``forward`` plugin (see README.md; settings in conf.py)."""

from fastdns.plugins.runtime import Plugin

#: Queries reaching it go to the worker's Python forwarder (one per worker,
#: shared by every block: fastdns.worker.plugins.attach, which also runs loop).
PLUGIN = Plugin(answers=True, engine=lambda server, conf: [{"kind": "python"}],
                flags=lambda server, conf: {"ra": True},
                attach="fastdns.worker.plugins:attach")
