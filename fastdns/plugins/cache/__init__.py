"""The ``cache`` plugin (see README.md; settings in conf.py)."""

from typing import Any

from fastdns.plugins.runtime import Plugin


def _flags(server: Any, conf: Any) -> dict[str, Any]:
    return {"cache": True, "stale_window": int(conf.serve_stale or 0), "keepttl": conf.keepttl}


#: The engine looks the shared cache up at the plugin's place in the chain; the
#: block's Python stages (forward) fill it.
PLUGIN = Plugin(answers=True, engine=lambda server, conf: [{"kind": "cache"}], flags=_flags)
