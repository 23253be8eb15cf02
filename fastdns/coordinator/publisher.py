"""ZeroMQ PUB (numbered deltas) and ROUTER (snapshots) on the coordinator side.

Owned by the coordinator's main thread only (ZeroMQ sockets are not
thread-safe); other threads hand work over through :meth:`Publisher.submit`.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import zmq

from fastdns.errors import IPCProtocolError
from fastdns.coordinator.leftovers import ipc_prefix
from fastdns.ipc import codec, schema

log = logging.getLogger("fastdns.coordinator.publisher")


class Publisher:
    """Sequenced deltas to all workers; full snapshots to one on request."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.dir = tempfile.mkdtemp(prefix=ipc_prefix())
        os.chmod(self.dir, 0o700)
        self.pub_ep = f"ipc://{self.dir}/pub"
        self.router_ep = f"ipc://{self.dir}/router"
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 100_000)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(self.pub_ep)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.router_ep)
        self.seq = 0
        self.gen = 0
        self._snapshot = snapshot
        self._cached: tuple[int, int, list[Any]] | None = None
        self.inbox: queue.Queue[Callable[[], None]] = queue.Queue()

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the coordinator's main thread (from any thread)."""
        self.inbox.put(fn)

    def drain(self) -> int:
        n = 0
        while True:
            try:
                fn = self.inbox.get_nowait()
            except queue.Empty:
                return n
            try:
                fn()
            except Exception:  # one bad update must not take the server down
                log.exception("an update failed on the coordinator; the previous state is kept")
            n += 1

    def publish(self, ops: list[list[Any]]) -> None:
        """One atomic delta."""
        if not ops:
            return
        self.seq += 1
        self._cached = None
        self.pub.send(codec.pack({"k": schema.DELTA, "seq": self.seq, "gen": self.gen, "ops": ops}))

    def new_generation(self) -> None:
        """The configuration changed: workers re-fetch a snapshot."""
        self.gen += 1
        self.seq += 1
        self._cached = None
        self.pub.send(codec.pack({"k": schema.DELTA, "seq": self.seq, "gen": self.gen, "ops": []}))

    def tick(self) -> None:
        """Tell workers where the sequence stands, so one that missed the last
        delta (ZeroMQ's slow joiner) notices without waiting for the next one."""
        self.pub.send(codec.pack({"k": schema.TICK, "seq": self.seq, "gen": self.gen}))

    def stop_workers(self) -> None:
        self.pub.send(codec.pack({"k": schema.STOP}))

    def requests(self, handle: Callable[[bytes, dict[str, Any]], None]) -> None:
        """Serve pending ROUTER requests (hello → snapshot; others to ``handle``)."""
        while True:
            try:
                ident, data = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            try:
                msg = codec.unpack(data)
            except IPCProtocolError as exc:
                log.warning("bad message from a worker: %s", exc)
                continue
            if msg["k"] == schema.HELLO:
                # zero-copy: ZeroMQ sends the cached frames' bytes as they are
                self.router.send_multipart([ident, *self.snapshot_frames()], copy=False)
            handle(ident, msg)

    @property
    def holds_snapshot(self) -> bool:
        """Whether an encoded snapshot is kept for workers still to fetch it."""
        return self._cached is not None

    def release_snapshot(self) -> None:
        """Forget the encoded snapshot (it is rebuilt when a worker next asks)."""
        self._cached = None

    def snapshot_frames(self) -> list[Any]:
        """The current snapshot as ``codec.pack_frames`` frames (built once per seq/gen)."""
        if self._cached is None or self._cached[:2] != (self.seq, self.gen):
            snap = self._snapshot()
            snap.update({"k": schema.SNAPSHOT, "seq": self.seq, "gen": self.gen})
            self._cached = (self.seq, self.gen, codec.pack_frames(snap))
        return self._cached[2]

    def close(self) -> None:
        self.pub.close(0)
        self.router.close(0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)
