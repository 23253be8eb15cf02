"""What goes into the shared cache, and for how long (CoreDNS ``cache`` semantics).

Works on stored bodies (``fastdns.wire.body_from_response``): the layout is
``BodyHdr`` (8 × uint16 + uint32, native order), ``nrr`` × ``RRMeta``
(end, ttl_off: uint16) and the RR bytes, TTLs big-endian at ``ttl_off``
(see ``fastdns/_wire.pxd``).  The OPT record is never in a body.

* kind: NOERROR with answers, or a delegation → success; NXDOMAIN and
  NOERROR/NODATA → denial; SERVFAIL → servfail; other rcodes are not cached.
* TTL: success = min TTL of answer + authority RRs; denial = min(SOA TTL,
  SOA MINIMUM) (RFC 2308); no RRs → 5 s (CoreDNS's fail-safe); then clamped to
  ``[MINTTL, TTL cap]`` of the kind; servfail → the ``servfail`` duration.
* Every RR's TTL in the stored body is set to that TTL (as CoreDNS's
  ``filterRRSlice``), so clients never see more than the cache keeps.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fastdns.plugins.cache.conf import CacheConf
from fastdns import wire
from fastdns.wire import name_from_text

__all__ = ["FAIL_SAFE_TTL", "MAX_MSG_TTL", "CachePolicy", "classify"]

FAIL_SAFE_TTL = 5
MAX_MSG_TTL = 3600          # CoreDNS's maxTTL when a message has nothing lower
_HDR = struct.Struct("=8HI")
_META = struct.Struct("=HH")
_T_NS, _T_SOA = 2, 6




def classify(body: bytes) -> tuple[str | None, int]:
    """(kind or None when not cacheable, the message's own TTL in seconds)."""
    flags, rcode, an, ns, ar, nrr, qlen, blen, min_ttl = _HDR.unpack_from(body)
    del flags, ar, qlen, blen, min_ttl
    blob = _HDR.size + nrr * _META.size
    if rcode == 2:
        return "servfail", 0
    if rcode not in (0, 3):
        return None, 0
    types: list[tuple[int, int, int]] = []   # (section, type, ttl, soa minimum)
    soa_min: list[int] = []
    for k in range(min(nrr, an + ns)):
        end, ttl_off = _META.unpack_from(body, _HDR.size + k * _META.size)
        p = blob + ttl_off
        rtype = int.from_bytes(body[p - 4:p - 2], "big")
        ttl = int.from_bytes(body[p:p + 4], "big")
        types.append((0 if k < an else 1, rtype, ttl))
        soa_min.append(int.from_bytes(body[blob + end - 4:blob + end], "big") if rtype == _T_SOA else 0)
    if rcode == 0 and an > 0:
        kind = "success"
    elif rcode == 0 and not any(t == _T_SOA for _, t, _ in types) and \
            any(t == _T_NS for s, t, _ in types if s == 1):
        kind = "success"                      # a delegation
    else:
        kind = "denial"
    if an + ns == 0:
        return kind, FAIL_SAFE_TTL
    low = MAX_MSG_TTL
    for (section, rtype, ttl), minimum in zip(types, soa_min):
        if kind == "success":
            low = min(low, ttl)
        elif rtype == _T_SOA:
            low = min(low, minimum) if section == 0 else min(low, ttl, minimum)
    return kind, low


def set_ttls(body: bytes, ttl: int) -> bytes:
    """A copy of ``body`` with every RR's TTL set to ``ttl``."""
    flags, rcode, an, ns, ar, nrr, qlen, blen, min_ttl = _HDR.unpack_from(body)
    out = bytearray(body)
    blob = _HDR.size + nrr * _META.size
    t = ttl.to_bytes(4, "big")
    for k in range(nrr):
        _, ttl_off = _META.unpack_from(body, _HDR.size + k * _META.size)
        out[blob + ttl_off:blob + ttl_off + 4] = t
    _HDR.pack_into(out, 0, flags, rcode, an, ns, ar, nrr, qlen, blen, ttl if nrr else min_ttl)
    return bytes(out)


@dataclass
class CachePolicy:
    """One block's ``cache`` settings turned into decisions on wire names."""

    conf: CacheConf

    def __post_init__(self) -> None:
        self.zones = tuple(name_from_text(z) for z in self.conf.zones)
        self.no_success = tuple(name_from_text(z) for z in self.conf.disable_success_zones)
        self.no_denial = tuple(name_from_text(z) for z in self.conf.disable_denial_zones)
        self.stale_window = int(self.conf.serve_stale or 0)
        self.everywhere = b"\x00" in self.zones

    def covers(self, key: bytes) -> bool:
        return self.everywhere or any(wire.is_under(key, z) for z in self.zones)

    def decide(self, key: bytes, body: bytes) -> tuple[str | None, int, bytes]:
        """(kind or None: do not cache, cache TTL, the body to store and answer with)."""
        if not self.covers(key):
            return None, 0, body
        c = self.conf
        _flags, rcode, an, _ns, ar, nrr, _qlen, _blen, min_ttl = _HDR.unpack_from(body)
        if rcode == 0 and an > 0 and ar == 0 and nrr == 1 and not self.no_success:
            # the common case: one answer RR; its TTL is the header's min_ttl
            if c.success_capacity == 0:
                return None, 0, body
            ttl = min(max(min_ttl, c.success_minttl), c.success_ttl)
            if ttl <= 0:
                return None, 0, body
            return "success", ttl, body if ttl == min_ttl else set_ttls(body, ttl)
        kind, ttl = classify(body)
        if kind == "success":
            if any(wire.is_under(key, z) for z in self.no_success) or c.success_capacity == 0:
                return None, 0, body
            ttl = min(max(ttl, c.success_minttl), c.success_ttl)
        elif kind == "denial":
            if any(wire.is_under(key, z) for z in self.no_denial) or c.denial_capacity == 0:
                return None, 0, body
            ttl = min(max(ttl, c.denial_minttl), c.denial_ttl)
        elif kind == "servfail":
            return ("servfail", int(c.servfail_ttl), body) if c.servfail_ttl >= 1 else (None, 0, body)
        else:
            return None, 0, body
        if ttl <= 0:
            return None, 0, body
        return kind, ttl, set_ttls(body, ttl)
