"""The ``transfer`` plugin: outgoing AXFR/IXFR of the block's ``kubernetes``, ``file``
and ``hosts`` zones (see README.md; settings in conf.py, serving in serve.py)."""

from typing import Any

from fastdns.plugins.runtime import Plugin


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    # Only AXFR and IXFR under the transfer zones reach Python; every other query,
    # and transfers of other names, stay in C (the tables after it REFUSE AXFR).
    return [{"kind": "python", "zones": list(conf.zones), "qtypes": [252, 251]}]


#: A Python stage at transfer's place in CoreDNS's order (before hosts, kubernetes
#: and file); the resolver reads the worker's own tables (serve.attach).
PLUGIN = Plugin(answers=True, engine=_stages, handler="fastdns.plugins.transfer.serve:handler",
                attach="fastdns.plugins.transfer.serve:attach")
