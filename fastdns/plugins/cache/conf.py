"""``cache`` settings with CoreDNS's defaults (capacities, TTL caps, prefetch, serve_stale)."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import (
    Dispenser, expect_args, no_args, parse_duration, parse_int, parse_zones,
)

__all__ = ["CacheConf", "parse", "ONCE", "DEFAULT_CAPACITY"]

ONCE = True
DEFAULT_CAPACITY = 9984  # 256 shards x 39 items, as CoreDNS


@dataclass(frozen=True)
class CacheConf:
    """What the ``cache`` directive says. TTLs and durations in seconds.

    ``serve_stale`` is None (off) or the longest time an expired entry may be
    served; ``serve_stale_mode`` is ``immediate`` or ``verify``.
    ``disable_*_zones`` are the zones for which that cache is not used.
    """

    ttl: int | None = None
    zones: tuple[str, ...] = (".",)
    success_capacity: int = DEFAULT_CAPACITY
    success_ttl: int = 3600
    success_minttl: int = 5
    denial_capacity: int = DEFAULT_CAPACITY
    denial_ttl: int = 1800
    denial_minttl: int = 5
    prefetch_amount: int = 0
    prefetch_duration: float = 60.0
    prefetch_percentage: int = 10
    serve_stale: float | None = None
    serve_stale_mode: str = "immediate"
    servfail_ttl: float = 5.0
    disable_success_zones: tuple[str, ...] = ()
    disable_denial_zones: tuple[str, ...] = ()
    keepttl: bool = False


def parse(d: Dispenser) -> CacheConf:
    """Parse ``cache [TTL] [ZONES…] { … }``."""
    args = list(d.args)
    kw: dict[str, object] = {}
    if args and args[0].text.lstrip("+-").isdigit():
        ttl = parse_int(args.pop(0), what="cache TTL", minimum=1)
        kw.update(ttl=ttl, success_ttl=ttl, denial_ttl=ttl)
    kw["zones"] = d.zones_or_server(args)
    for sub in d.block():
        name, a = sub.name.text, sub.args
        if name in ("success", "denial"):
            expect_args(sub.name, a, 1, 3, f"{name} CAPACITY [TTL] [MINTTL]")
            kw[f"{name}_capacity"] = parse_int(a[0], what=f"{name} capacity", minimum=0)
            if len(a) > 1:
                kw[f"{name}_ttl"] = parse_int(a[1], what="cache TTL", minimum=1)
            if len(a) > 2:
                kw[f"{name}_minttl"] = parse_int(a[2], what="cache min TTL", minimum=0)
        elif name == "prefetch":
            expect_args(sub.name, a, 1, 3, "prefetch AMOUNT [[DURATION] [PERCENTAGE%]]")
            kw["prefetch_amount"] = parse_int(a[0], what="prefetch amount", minimum=0)
            if len(a) > 1:
                kw["prefetch_duration"] = parse_duration(a[1], what="prefetch duration")
            if len(a) > 2:
                pct = a[2].text
                if not pct.endswith("%"):
                    raise a[2].error(f"prefetch percentage must end with '%': {pct!r}")
                if not pct[:-1].isdigit() or not 10 <= int(pct[:-1]) <= 90:
                    raise a[2].error(f"prefetch percentage should fall in range [10%, 90%]: {pct!r}")
                kw["prefetch_percentage"] = int(pct[:-1])
        elif name == "serve_stale":
            expect_args(sub.name, a, 0, 2, "serve_stale [DURATION] [immediate|verify]")
            kw["serve_stale"] = parse_duration(a[0], what="serve_stale duration") if a else 3600.0
            if len(a) > 1:
                mode = a[1].text.lower()
                if mode not in ("immediate", "verify"):
                    raise a[1].error(f"invalid value for serve_stale refresh mode: {a[1].text!r}")
                kw["serve_stale_mode"] = mode
        elif name == "servfail":
            expect_args(sub.name, a, 1, 1, "servfail DURATION")
            kw["servfail_ttl"] = parse_duration(a[0], what="servfail duration", maximum=300.0)
        elif name == "disable":
            expect_args(sub.name, a, 1, None, "disable success|denial [ZONES...]")
            kind = a[0].text
            if kind not in ("success", "denial"):
                raise a[0].error(f"cache type for disable must be 'success' or 'denial', not {kind!r}")
            zones = parse_zones(a[1:]) if len(a) > 1 else (".",)
            kw[f"disable_{kind}_zones"] = zones
        elif name == "keepttl":
            no_args(sub)
            kw["keepttl"] = True
        else:
            raise d.unknown(sub)
    return CacheConf(**kw)  # type: ignore[arg-type]
