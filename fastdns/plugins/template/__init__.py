"""The ``template`` plugin (see README.md; settings in conf.py, per-query code in serve.py).

Served as one ``python`` engine stage whose zones are the union of the block's
``template`` lines' zones, with a prefilter (``data``, :mod:`.dfa`): the C
engine walks the templates itself (zones, class, type, each regex compiled to
a DFA, fallthrough) and hands a query to Python only when a template would
answer or SERVFAIL it; every other query goes on in C (e.g. to ``kubernetes``)
without reaching Python.  The handler tries the templates in Corefile order,
as CoreDNS's ``Handler``, and a query every template passes on resumes the
chain in C after the stage (``fastdns._loop.Engine.resume``).
"""

from typing import Any

from fastdns.plugins.runtime import Plugin


def _stages(server: Any, conf: Any) -> list[dict[str, Any]]:
    from fastdns.plugins.template.dfa import encode
    return [{"kind": "python", "zones": list(conf.zones), "data": encode(conf)}]


def _handler(server: Any, conf: Any) -> Any:
    from fastdns.plugins.template.serve import TemplateResolver
    return TemplateResolver(conf)


PLUGIN = Plugin(answers=True, engine=_stages, handler="fastdns.plugins.template:_handler")
