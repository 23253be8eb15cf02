"""The ``acl`` plugin (see README.md; settings in conf.py).

The rules are checked by the C engine for every query of the block (a stage
of kind ``acl``); :func:`encode` writes them in the layout the engine walks.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastdns._wire import name_from_text
from fastdns.errors import ConfigError
from fastdns.plugins.runtime import Plugin

#: The engine's action codes (fastdns/_loop.pyx ACL_*).
ACTION_CODES = {"allow": 1, "block": 2, "filter": 3, "drop": 4}
_ALL = 0xFFFF


def encode(conf: Any) -> bytes:
    """The rules of an :class:`~fastdns.plugins.acl.conf.AclConf` as the engine reads
    them: per rule ``nzones u8, (len u8, wire name)…, npolicies u8, policies``;
    per policy ``action u8, ntypes u16 (0xFFFF: every type), types u16…, nnets u16
    (0xFFFF: every source), (family 4|16 u8, prefix u8, address)…``."""
    out = bytearray()
    for rule in conf.rules:
        if len(rule.zones) > 255 or len(rule.policies) > 255:
            raise ConfigError("acl: at most 255 zones and 255 policies in one acl block")
        out.append(len(rule.zones))
        for zone in rule.zones:
            wire = name_from_text(zone)
            out += bytes((len(wire),)) + wire
        out.append(len(rule.policies))
        for pol in rule.policies:
            out.append(ACTION_CODES[pol.action])
            if pol.qtypes is None:
                out += _ALL.to_bytes(2, "big")
            else:
                out += len(pol.qtypes).to_bytes(2, "big")
                for t in pol.qtypes:
                    out += t.to_bytes(2, "big")
            if pol.nets is None:
                out += _ALL.to_bytes(2, "big")
            else:
                if len(pol.nets) >= _ALL:
                    raise ConfigError("acl: too many networks in one policy")
                out += len(pol.nets).to_bytes(2, "big")
                for text in pol.nets:
                    net = ipaddress.ip_network(text, strict=False)
                    out += bytes((net.max_prefixlen // 8, net.prefixlen)) + net.network_address.packed
    return bytes(out)


PLUGIN = Plugin(answers=True,
                engine=lambda server, conf: [{"kind": "acl", "data": encode(conf)}])
