"""Upstream failures as text in the shape of Go's ``net.OpError`` (what CoreDNS logs).

So that ``errors { consolidate 5m ".* i/o timeout$" }`` and similar rules written
for CoreDNS match fastdns's errors too::

    read udp 127.0.0.1:40000->127.0.0.1:53: i/o timeout
    read udp 127.0.0.1:40000->127.0.0.1:53: read: connection refused
    dial tcp 127.0.0.1:53: connect: connection refused
    tls: failed to verify certificate: Hostname mismatch, certificate is not valid for 'x'.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

__all__ = ["hostport", "local_addr", "op_error", "reason"]


def hostport(addr: Any) -> str:
    """``host:port`` (``[v6]:port``) of a socket address."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_addr(sock: socket.socket | None) -> Any:
    """The local address of ``sock`` (None when it has none or is closed)."""
    if sock is None:
        return None
    try:
        return sock.getsockname()
    except OSError:
        return None


def reason(exc: BaseException, syscall: str = "") -> str:
    """Go's text for the cause: ``i/o timeout``, ``read: connection refused``, ``EOF``…"""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc}"
    if isinstance(exc, EOFError):
        return "EOF"
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror.lower()           # Go's syscall errors are lower case
        return f"{syscall}: {text}" if syscall else text
    return str(exc)


def op_error(op: str, proto: str, remote: Any, cause: str, local: Any = None) -> str:
    """``OP PROTO [LOCAL->]REMOTE: CAUSE`` (a TLS failure is its own text, as in Go)."""
    if cause.startswith("tls: "):
        return cause
    src = f"{hostport(local)}->" if local else ""
    return f"{op} {proto} {src}{hostport(remote)}: {cause}"
