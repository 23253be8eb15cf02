"""DNS over TCP for one worker (RFC 7766): length-prefixed, pipelined, bounded.

Several queries per connection, answered in order as they complete; a
connection idle for :data:`~fastdns.limits.TCP_IDLE_TIMEOUT` seconds is
closed; at most :data:`~fastdns.limits.TCP_MAX_CONNECTIONS` per worker
(further ones are accepted and closed at once, so the kernel's backlog does
not fill with them).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from fastdns.limits import TCP_ACCEPT_BATCH, TCP_IDLE_TIMEOUT, TCP_MAX_BUFFERED, TCP_MAX_CONNECTIONS

IDLE_TIMEOUT = TCP_IDLE_TIMEOUT
MAX_BUFFERED = TCP_MAX_BUFFERED


class Connection:
    """One client connection: input buffer, output buffer, last activity."""

    __slots__ = ("sock", "fd", "listener", "inbuf", "outbuf", "last", "closed")

    def __init__(self, sock: socket.socket, listener: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.listener = listener
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.last = time.monotonic()
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def frames(self) -> list[bytes]:
        """Complete messages received so far (removed from the buffer)."""
        out = []
        buf = self.inbuf
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + n:
                break
            out.append(bytes(buf[2:2 + n]))
            del buf[:2 + n]
        return out

    def queue(self, answer: bytes) -> None:
        if self.closed or not answer:
            return
        self.outbuf += len(answer).to_bytes(2, "big") + answer
        self.flush()

    def flush(self) -> None:
        if self.closed or not self.outbuf:
            return
        try:
            n = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.outbuf[:n]
        if len(self.outbuf) > MAX_BUFFERED:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class TCPServer:
    """Accepts and serves connections on the worker's TCP listeners."""

    def __init__(self, answer: Callable[[Connection, bytes], None],
                 max_connections: int = TCP_MAX_CONNECTIONS) -> None:
        self.answer = answer
        self.conns: dict[int, Connection] = {}
        self.max_connections = max_connections
        self.refused = 0                # connections closed at accept: over the limit

    def accept(self, lsock: socket.socket, listener: int) -> list[Connection]:
        new = []
        for _ in range(TCP_ACCEPT_BATCH):
            try:
                sock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if len(self.conns) >= self.max_connections:
                sock.close()
                self.refused += 1
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, listener)
            self.conns[conn.fd] = conn
            new.append(conn)
        return new

    def readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        conn.last = time.monotonic()
        conn.inbuf += data
        for frame in conn.frames():
            self.answer(conn, frame)
        if conn.closed:
            self.drop(conn)

    def drop(self, conn: Connection) -> None:
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
        conn.close()

    def expire(self, now: float) -> list[Connection]:
        """Close idle connections; returns them (so the caller unregisters them)."""
        gone = [c for c in self.conns.values() if now - c.last > IDLE_TIMEOUT or c.closed]
        for c in gone:
            self.drop(c)
        return gone

    def close_all(self) -> None:
        for c in list(self.conns.values()):
            c.close()
        self.conns.clear()
