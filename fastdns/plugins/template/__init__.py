"""The ``template`` plugin (see README.md; settings in conf.py, per-query code in serve.py).

Served as one ``python`` engine stage whose zones are the union of the block's
``template`` lines' zones: the C engine hands over only names under them (the
rest go on in C, e.g. to ``kubernetes``); the handler tries the templates in
Corefile order, as CoreDNS's ``Handler``, and a query every template passes on
resumes the chain in C after the stage (``fastdns._loop.Engine.resume``).
"""

from typing import Any

from fastdns.plugins.runtime import Plugin


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    return [{"kind": "python", "zones": list(conf.zones)}]


def _handler(server: Any, conf: Any) -> Any:
    from fastdns.plugins.template.serve import TemplateResolver
    return TemplateResolver(conf)


PLUGIN = Plugin(answers=True, engine=_stages, handler="fastdns.plugins.template:_handler")
