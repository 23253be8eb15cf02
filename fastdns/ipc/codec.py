"""msgpack with fixed options and limits for IPC bodies.

Large payloads (a snapshot's packed records, tens of MB) travel *out of
band*: wrapped in :class:`OutOfBand`, each becomes a ZeroMQ frame of its own
after the msgpack head (:func:`pack_frames`), referenced from the head by an
ext value.  Neither side copies them through msgpack: the coordinator sends
the bytes it already holds and a worker reads the received frame in place.
"""

from __future__ import annotations

import pickle
from typing import Any

import msgpack

from fastdns.errors import IPCProtocolError

MAX_MESSAGE = 1 << 30          # a full snapshot of a very large cluster still fits
OOB_EXT = 1                    # msgpack ext code: "frame N after the head"


class OutOfBand:
    """A payload to send as a frame of its own (see :func:`pack_frames`)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def pack(obj: dict[str, Any]) -> bytes:
    """Encode one message (a map with a ``"k"`` kind)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Decode one single-frame message; anything malformed or oversized is IPCProtocolError."""
    return unpack_frames([data])


def pack_frames(obj: dict[str, Any]) -> list[Any]:
    """Encode one message as ``[head, payload...]``: every :class:`OutOfBand`
    value becomes one payload frame (sent as is, not copied into the head)."""
    frames: list[Any] = []

    def default(o: Any) -> Any:
        if isinstance(o, OutOfBand):
            frames.append(o.data)
            return msgpack.ExtType(OOB_EXT, (len(frames) - 1).to_bytes(4, "big"))
        raise TypeError(f"cannot encode {type(o).__name__} in an IPC message")

    head = msgpack.packb(obj, use_bin_type=True, default=default)
    return [head, *frames]


def unpack_frames(frames: list[Any]) -> dict[str, Any]:
    """Decode ``[head, payload...]`` from :func:`pack_frames`; each out-of-band
    value is its frame as received (bytes or a buffer).  IPCProtocolError for
    anything malformed, oversized or pointing at a missing frame."""
    if not frames:
        raise IPCProtocolError("empty IPC message")
    head, payloads = frames[0], frames[1:]
    total = sum(memoryview(f).nbytes for f in frames)
    if total > MAX_MESSAGE:
        raise IPCProtocolError(f"IPC message of {total} bytes exceeds {MAX_MESSAGE}")

    def ext_hook(code: int, data: bytes) -> Any:
        if code != OOB_EXT or len(data) != 4:
            raise ValueError(f"unknown ext type {code}")
        i = int.from_bytes(data, "big")
        if i >= len(payloads):
            raise ValueError(f"out-of-band frame {i} missing ({len(payloads)} sent)")
        return payloads[i]

    try:
        obj = msgpack.unpackb(head, raw=False, strict_map_key=True, ext_hook=ext_hook)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise IPCProtocolError(f"malformed IPC message: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("k"), str):
        raise IPCProtocolError("IPC message is not a map with a kind")
    return obj


def pack_plan(plan: Any) -> bytes:
    """The coordinator's resolved :class:`~fastdns.config.plan.Plan` for its workers.

    Pickled: a plan is frozen dataclasses of plain values, and it travels only
    from the coordinator to the workers it started, over endpoints in a 0700
    directory (nothing else can write to a worker's sockets)."""
    return pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_plan(data: bytes) -> Any:
    """The plan :func:`pack_plan` sent."""
    try:
        return pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a protocol error
        raise IPCProtocolError(f"bad plan in a configuration message: {exc}") from None
