"""fastdns.ipc.codec: msgpack bodies, out-of-band frames, and what a malformed message gives.

The frame path is checked over a real ZeroMQ ROUTER/DEALER pair (ipc://),
with the copy=False receive a worker uses.
"""

from __future__ import annotations

import msgpack
import pytest
import zmq

from fastdns.errors import IPCProtocolError
from fastdns.ipc import codec


def test_out_of_band_payloads_round_trip_over_zeromq(tmp_path) -> None:
    big = bytes(range(256)) * 40_000                    # 10 MB
    msg = {"k": "snapshot", "blocks": [{"packed": codec.OutOfBand(big), "n": 1},
                                       {"packed": codec.OutOfBand(b""), "n": 2}]}
    frames = codec.pack_frames(msg)
    assert len(frames) == 3 and frames[1] is big        # the payload itself, not a copy
    assert len(frames[0]) < 200
    ctx = zmq.Context()
    try:
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        ep = f"ipc://{tmp_path}/r"
        router.bind(ep)
        dealer.connect(ep)
        dealer.send(b"hello")
        ident, _ = router.recv_multipart()
        router.send_multipart([ident, *frames], copy=False)
        got = dealer.recv_multipart(copy=False)
        out = codec.unpack_frames([f.buffer for f in got])
        assert out["k"] == "snapshot" and [b["n"] for b in out["blocks"]] == [1, 2]
        assert bytes(out["blocks"][0]["packed"]) == big
        assert bytes(out["blocks"][1]["packed"]) == b""
    finally:
        for s in (router, dealer):
            s.close(0)
        ctx.term()


def test_plain_messages_need_no_payload_frames() -> None:
    frames = codec.pack_frames({"k": "hello", "worker": 1})
    assert frames == [codec.pack({"k": "hello", "worker": 1})]
    assert codec.unpack_frames(frames) == {"k": "hello", "worker": 1}


@pytest.mark.parametrize("frames, what", [
    ([], "empty"),
    ([msgpack.packb({"k": "s", "p": msgpack.ExtType(codec.OOB_EXT, (1).to_bytes(4, "big"))}),
      b"only frame 0"], "missing"),
    ([msgpack.packb({"k": "s", "p": msgpack.ExtType(7, b"x")})], "unknown ext"),
    ([msgpack.packb({"k": "s", "p": msgpack.ExtType(codec.OOB_EXT, b"\x00")}), b""], "ext"),
    ([b"\xc1"], "malformed"),
    ([msgpack.packb([1, 2])], "not a map"),
])
def test_malformed_frames_are_protocol_errors(frames, what) -> None:
    with pytest.raises(IPCProtocolError):
        codec.unpack_frames(frames)


def test_unknown_objects_are_refused_when_packing() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        codec.pack_frames({"k": "x", "v": object()})
