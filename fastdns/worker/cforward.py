"""What a block's ``forward`` (+ ``cache``) hands to the C forwarder, and its errors back.

The worker's C engine forwards UDP clients' misses itself
(``fastdns/_loop_forward.pxi``, TCP upstreams in ``_loop_fwtcp.pxi``): :func:`spec`
turns a block's forward directives and cache settings into what
:meth:`fastdns._loop.Engine.set_forward` takes, or None when the block must stay on
the Python forwarder (:mod:`fastdns.worker.forwarder`) altogether.  Per directive,
DoT upstreams keep that directive's queries in Python.  :func:`report` turns the C
side's failures into the errors plugin's lines (Go's ``net.OpError`` text, as the
Python forwarder writes them).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import dns.rcode

from fastdns import limits, wire
from fastdns.errors import FormatError
from fastdns.plugins.cache.conf import CacheConf
from fastdns.plugins.forward.conf import ForwardConf
from fastdns.worker.fwdstats import F_WAITING, ForwardCounters
from fastdns.worker.neterr import hostport, op_error

__all__ = ["spec", "install", "report"]

log = logging.getLogger("fastdns.worker.forward")
_LIMIT_ZONES = 8            # = FW_MAX_ZONES / FW_MAX_EXCEPT in _loop_forward.pxi
_LIMIT_GROUPS = 8


def _group(conf: ForwardConf, flag0: int, slot0: int, counted: bool,
           shared: bool) -> dict[str, Any]:
    base = ForwardCounters.base(slot0) if slot0 >= 0 else -1
    return {
        "zone": wire.name_from_text(conf.from_zone),
        "except": [wire.name_from_text(z) for z in conf.except_zones],
        "python": any(u.scheme == "tls" for u in conf.to),
        "force_tcp": conf.force_tcp,
        "caps": conf.use_caps_for_id,
        "source": conf.source_address,
        "prefer_udp": conf.prefer_udp,
        "tcp_timeout": conf.read_timeout + limits.UPSTREAM_TCP_SLACK,
        "expire": conf.expire,
        "max_age": conf.max_age or 0.0,
        "max_idle_conns": conf.max_idle_conns or 0,
        "policy": conf.policy,
        "max_fails": conf.max_fails,
        "down": max(1.0, 2 * conf.health_check),
        "timeout": conf.read_timeout,
        "failover": [int(dns.rcode.from_text(r)) for r in conf.failover_rcodes],
        "max_concurrent": conf.max_concurrent,
        # the directive's waiting clients, summed over the workers for max_concurrent
        "waiting": base + F_WAITING if shared and base >= 0 else -1,
        "ups": [(u.host, u.port, flag0 + i,
                 ForwardCounters.base(slot0 + i) if counted and slot0 >= 0 else -1)
                for i, u in enumerate(conf.to)],
    }


def spec(block: int, stage: int, confs: tuple[ForwardConf, ...], cache: CacheConf | None,
         bconf: dict[str, Any], src: int, slot0: int = -1, counted: bool = True,
         shared: bool = False) -> dict[str, Any] | None:
    """The C forwarder's settings for one block, or None (the block stays in Python).

    ``bconf``: the block's engine configuration (bufsize, minimal, nsid, log,
    loadbalance, cache_ns); ``slot0``: the counter slot of its first upstream
    (-1: none); ``counted``: the upstream counters are kept (prometheus);
    ``shared``: the engine has every worker's counter rows (``max_concurrent``
    across workers)."""
    if not confs or len(confs) > _LIMIT_GROUPS:
        return None
    if cache is not None and (cache.prefetch_amount or any(
            len(z) > _LIMIT_ZONES for z in (cache.zones, cache.disable_success_zones,
                                           cache.disable_denial_zones))):
        return None                 # prefetch tracks what it stored: the Python forwarder
    if any(len(c.except_zones) > _LIMIT_ZONES for c in confs):
        return None
    groups = []
    flag = 0
    for c in confs:
        groups.append(_group(c, flag, slot0 + flag if slot0 >= 0 else -1, counted, shared))
        flag += len(c.to)
    if all(g["python"] for g in groups):
        return None
    out: dict[str, Any] = {
        "block": block, "stage": stage, "src": src, "groups": groups,
        "cache_ns": int(bconf.get("cache_ns", 0)), "shuffle": bool(bconf.get("loadbalance")),
        "minimal": bool(bconf.get("minimal")), "log": bool(bconf.get("log")),
        "bufsize": int(bconf.get("bufsize") or 0), "nsid": bconf.get("nsid"),
    }
    if cache is not None:
        out["cache"] = {
            "zones": [wire.name_from_text(z) for z in cache.zones],
            "no_success": [wire.name_from_text(z) for z in cache.disable_success_zones],
            "no_denial": [wire.name_from_text(z) for z in cache.disable_denial_zones],
            "success_capacity": cache.success_capacity, "denial_capacity": cache.denial_capacity,
            "success_ttl": cache.success_ttl, "success_minttl": cache.success_minttl,
            "denial_ttl": cache.denial_ttl, "denial_minttl": cache.denial_minttl,
            "servfail_ttl": int(cache.servfail_ttl), "stale": bool(int(cache.serve_stale or 0)),
        }
    return out


def install(worker: Any, block: int, confs: tuple[ForwardConf, ...], cache: CacheConf | None,
            slot0: int, counted: bool = True, shared: bool = False) -> bool:
    """Hand block ``block``'s forward to the worker's C engine if it can take it."""
    bconf = worker._econf["blocks"][block]
    stage = next((k for k, st in enumerate(bconf["stages"])
                  if st["plugin"] == "forward" and st["kind"] == "python"), None)
    if stage is None or os.environ.get("FASTDNS_PYTHON_FORWARD") == "1":
        return False
    s = spec(block, stage, confs, cache, bconf, bconf["stages"][stage].get("src", 0), slot0,
             counted, shared)
    if s is None:
        return False
    try:
        worker.engine.set_forward(s)
    except ValueError as exc:       # cannot happen for a checked plan; the Python path serves
        log.warning("block %d: forward stays in Python: %s", block, exc)
        return False
    worker._cforward[block] = s
    health = worker.sync.health.get(block)
    if health:
        worker.engine.set_forward_health(block, health)
    return True


def report(worker: Any, errors: list[tuple[Any, ...]]) -> None:
    """The C forwarder's SERVFAILs: to the debug log (as the Python forwarder logs each
    failure) and to the errors plugin (if the block has one)."""
    miss = worker.miss
    for block, group, up, kind, errnum, local, packet, rcode, tcp in errors:
        s = worker._cforward.get(block)
        remote: Any = ("?", 0)
        if s is not None and 0 <= group < len(s["groups"]) and 0 <= up < len(s["groups"][group]["ups"]):
            host, port = s["groups"][group]["ups"][up][:2]
            remote = (host, port)
        text = _text(kind, errnum, remote, local, s, group, "tcp" if tcp else "udp")
        if rcode == wire.SERVFAIL:
            log.debug("upstream dns://%s: %s", hostport(remote), text)
        if miss is None or miss.on_error is None:
            continue
        try:
            q = wire.parse_query(packet)
        except FormatError:
            continue
        miss.error(block, q, rcode, text)


def _text(kind: str, errnum: int, remote: Any, local: Any, s: dict[str, Any] | None,
          group: int, proto: str = "udp") -> str:
    """Go's net.OpError text of one failure (fastdns.worker.neterr), or the Python
    forwarder's text of a refusal."""
    cause = os.strerror(errnum).lower() if errnum else ""
    if kind == "concurrent":
        limit = s["groups"][group]["max_concurrent"] if s is not None else "?"
        return f"concurrent queries exceeded maximum {limit}"
    if kind == "pending":
        return (f"queries waiting on upstreams exceeded the worker's "
                f"{limits.UPSTREAM_MAX_PENDING}")
    if kind == "timeout":
        return op_error("read", proto, remote, "i/o timeout", local)
    if kind == "read":
        return op_error("read", proto, remote, f"read: {cause}", local)
    if kind == "eof":
        return op_error("read", proto, remote, "EOF", local)
    if kind == "frame":
        return op_error("read", proto, remote, "dns: bad frame: shorter than a header", local)
    if kind == "write":
        return op_error("write", proto, remote, f"write: {cause}", local)
    if kind == "dial":
        return op_error("dial", proto, remote, f"connect: {cause}")
    if kind == "ports":
        return op_error("dial", proto, remote, "too many upstream sockets open")
    return "no healthy proxies"
