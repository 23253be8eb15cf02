"""Non-blocking, pipelined DNS-over-TCP and DNS-over-TLS connections for the worker loop.

The Python forwarder (:mod:`fastdns.worker.forwarder`: DoT upstreams, and every TCP
query when ``FASTDNS_PYTHON_FORWARD=1``) keeps its upstream connections here instead
of in a thread pool: each :class:`StreamConn` is a non-blocking socket (wrapped in
TLS with the handshake driven by the loop) whose descriptor is polled by the worker's
C loop (:meth:`fastdns._loop.Engine.run` takes ``(fd, events)`` for it) and driven by
:meth:`StreamConn.step` when it wakes: connect, handshake, write what is queued, read
and split frames.  Queries are pipelined (RFC 7766 6.2.1.1); answers may come in any
order and are matched by ID (the forwarder checks the question).
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from fastdns import limits
from fastdns.worker.neterr import hostport, op_error, reason

__all__ = ["StreamConn", "MAX_PIPELINE"]

MAX_PIPELINE = limits.UPSTREAM_TCP_PIPELINE   # queries in flight on one connection
_MAX_QUEUED = 1 << 16       # bytes queued unsent on one connection


class StreamConn:
    """One connection to an upstream.  ``on_frame(conn, data)`` gets every whole
    frame; ``on_close(conn, why)`` once, when it breaks (``why``: Go's OpError text)."""

    def __init__(self, addr: tuple[str, int], tls: ssl.SSLContext | None,
                 server_hostname: str | None,
                 on_frame: Callable[[StreamConn, bytes], None],
                 on_close: Callable[[StreamConn, str], None],
                 source: str | None = None) -> None:
        self.addr = addr
        self.on_frame = on_frame
        self.on_close = on_close
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.sock: Any = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fd = self.sock.fileno()
        if source:
            try:
                self.sock.bind((source, 0))
            except OSError:
                self.sock.close()
                raise
        self.tls = tls
        self.server_hostname = server_hostname
        self.connected = False
        self.handshaken = tls is None
        self.closed = False
        self.retire = False             # no new queries; closed when the last one ends
        self.pending: dict[int, Any] = {}   # query ID -> the flight waiting on it
        self.answered = 0
        self.opened = self.last = time.monotonic()
        self.last_answer = 0.0
        self._out = bytearray()
        self._in = bytearray()
        rc = self.sock.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self.sock.close()
            raise OSError(rc, f"connect: {reason(OSError(rc, _strerror(rc)))}")

    # -- what the loop polls --------------------------------------------------------

    @property
    def poll(self) -> tuple[int, int]:
        """``(fd, events)`` for the worker loop's poll set."""
        ev = select.POLLIN
        if not self.connected or self._out or self._wants_write:
            ev |= select.POLLOUT
        return (self.fd, ev)

    _wants_write = False

    @property
    def full(self) -> bool:
        return self.retire or self.closed or len(self.pending) >= MAX_PIPELINE \
            or len(self._out) > _MAX_QUEUED

    def local(self) -> Any:
        try:
            return self.sock.getsockname()
        except OSError:
            return None

    # -- queries --------------------------------------------------------------------

    def send(self, qid: int, query: bytes, flight: Any) -> None:
        """Queue one query (its ID unused on this connection: see :meth:`free_id`)."""
        self.pending[qid] = flight
        self._out += struct.pack("!H", len(query)) + query
        self.last = time.monotonic()
        if self.connected and self.handshaken:
            self._flush()

    def forget(self, qid: int) -> None:
        """The query ``qid`` ended elsewhere (timeout): a late answer is ignored."""
        self.pending.pop(qid, None)

    # -- driving it -----------------------------------------------------------------

    def step(self) -> None:
        """The loop woke for this connection (or a query was queued): go as far as the
        socket allows without blocking."""
        if self.closed:
            return
        try:
            if not self.connected:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.fail(op_error("dial", "tcp", self.addr,
                                       f"connect: {_strerror(err).lower()}"))
                    return
                try:
                    self.sock.getpeername()
                except OSError:
                    return                      # still connecting
                self.connected = True
                if self.tls is not None:
                    self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_hostname,
                                                     do_handshake_on_connect=False)
            if not self.handshaken:
                try:
                    self.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self._wants_write = False
                    return
                except ssl.SSLWantWriteError:
                    self._wants_write = True
                    return
                self.handshaken = True
                self._wants_write = False
            self._flush()
            if not self.closed:
                self._read()
        except (OSError, ssl.SSLError) as exc:
            self.fail(op_error("read", "tcp", self.addr, reason(exc, "read"), self.local()))

    def _flush(self) -> None:
        while self._out:
            try:
                n = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return
            except ssl.SSLWantReadError:
                return
            del self._out[:n]

    def _read(self) -> None:
        for _ in range(16):                 # one flooding upstream cannot hold the loop
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                return
            if not data:
                self.fail(op_error("read", "tcp", self.addr, "EOF", self.local()))
                return
            self._in += data
            while len(self._in) >= 2:
                n = struct.unpack_from("!H", self._in)[0]
                if n < 12:
                    self.fail(op_error("read", "tcp", self.addr,
                                       "dns: bad frame: shorter than a header", self.local()))
                    return
                if len(self._in) < 2 + n:
                    break
                frame = bytes(self._in[2:2 + n])
                del self._in[:2 + n]
                self.last = time.monotonic()
                self.on_frame(self, frame)
                if self.closed:
                    return

    def fail(self, why: str) -> None:
        """Close it and tell the owner (its pending queries are the owner's to move)."""
        if self.closed:
            return
        self.close()
        self.on_close(self, why)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"<StreamConn {hostport(self.addr)} pending={len(self.pending)}>"


def _strerror(err: int) -> str:
    import os
    return os.strerror(err)
