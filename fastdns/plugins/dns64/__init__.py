"""The ``dns64`` plugin (see README.md; settings in conf.py, per-query code in serve.py).

Served as one ``python`` engine stage at *dns64*'s place in CoreDNS's order (before
``cache``, the tables and ``forward``) that takes AAAA queries only: every other
query type goes on in C without reaching Python.  No cache lookup is put in front
of the stage (``uncached``): CoreDNS's *dns64* runs before *cache*, so the cache
holds what the chain after it answered, never a synthesised answer, and the
client's address family is checked on every query.  The handler asks the rest of
the chain for the AAAA answer and, when it must synthesise, the whole chain for
the A answer (the ``lookup`` the worker's miss handler gives it).
"""

from typing import Any

from fastdns.plugins.runtime import Plugin

AAAA = 28


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    return [{"kind": "python", "qtypes": [AAAA], "uncached": True}]


PLUGIN = Plugin(answers=True, engine=_stages, handler="fastdns.plugins.dns64.serve:handler")
