"""The ``debug`` plugin (see README.md; settings in conf.py).

A block flag: a query that makes a Python handler fail is logged with its
packet as a hex dump (:func:`hexdump`, CoreDNS's ``debug:`` format) and a
traceback; with ``debug`` in any block, workers log at debug level.
"""

from __future__ import annotations

from fastdns.plugins.runtime import Plugin


def hexdump(packet: bytes) -> str:
    """CoreDNS's debug dump of a message: ``debug: OFFSET`` + 16 bytes per line, then
    the final offset (``text2pcap -i 17 -u 53,53`` reads it back)."""
    lines = [f"debug: {off:06x} " + " ".join(f"{b:02x}" for b in packet[off:off + 16])
             for off in range(0, len(packet), 16)]
    lines.append(f"debug: {len(packet):06x}")
    return "\n".join(lines)


PLUGIN = Plugin(flags=lambda server, conf: {"debug": True})
