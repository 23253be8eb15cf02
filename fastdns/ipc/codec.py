"""msgpack with fixed options and limits for IPC bodies."""

from __future__ import annotations

from typing import Any

import msgpack

from fastdns.errors import IPCProtocolError

MAX_MESSAGE = 1 << 30          # a full snapshot of a very large cluster still fits


def pack(obj: dict[str, Any]) -> bytes:
    """Encode one message (a map with a ``"k"`` kind)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Decode one message; anything malformed or oversized is IPCProtocolError."""
    if len(data) > MAX_MESSAGE:
        raise IPCProtocolError(f"IPC message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise IPCProtocolError(f"malformed IPC message: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("k"), str):
        raise IPCProtocolError("IPC message is not a map with a kind")
    return obj
