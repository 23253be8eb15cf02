"""Plan → the worker engine's configuration, and the check that workers can serve it.

The configuration itself is built by the plugin runtime
(:func:`fastdns.plugins.runtime.engine_config`); the coordinator computes it
once per plan and sends it to every worker.
"""

from __future__ import annotations

from fastdns.config.plan import Plan
from fastdns.errors import ConfigError
from fastdns.plugins.runtime import engine_config

__all__ = ["engine_config", "check_plan"]


def check_plan(plan: Plan) -> None:
    """Raise :class:`ConfigError` unless the workers can serve ``plan``: every
    plugin in it is served, and its listeners, blocks and zones fit the C
    engine's fixed tables.  ``serve``, a reload and ``check-config`` call it,
    so a Corefile a worker would refuse is refused before any worker sees it."""
    from fastdns._loop import _check_conf

    plan.require_implemented()
    econf = engine_config(plan)
    try:
        _check_conf(econf["listeners"], econf["blocks"])
    except ValueError as exc:
        raise ConfigError(f"{exc} (a limit of fastdns's engine)", plan.source) from None
