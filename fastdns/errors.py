"""The whole fastdns exception hierarchy.

Every error fastdns raises on purpose is a :class:`FastDNSError`; callers
tell errors apart by class, never by message text.
"""

from __future__ import annotations


class FastDNSError(Exception):
    """Base class of every error fastdns raises on purpose."""


class FormatError(FastDNSError, ValueError):
    """A DNS message is malformed (truncated, bad name, bad counts, bad OPT...)."""


class EncodeError(FastDNSError, ValueError):
    """A response could not be encoded (bad rdata, name too long, too big)."""


class ConfigError(FastDNSError):
    """A Corefile (or a plugin's directives in it) is invalid.

    ``file``, ``line`` and ``column`` say where; ``str()`` gives
    ``file:line:col: message``.
    """

    def __init__(self, message: str, file: str | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)
        return f"{where}: {self.message}" if where else self.message


class SnapshotError(FastDNSError):
    """A cluster snapshot file cannot be read or holds invalid objects."""


class KubernetesError(FastDNSError):
    """The Kubernetes API cannot be reached or configured (no token, bad kubeconfig...)."""


class IPCProtocolError(FastDNSError):
    """A message between coordinator and worker is malformed or exceeds limits."""


class ServerError(FastDNSError):
    """The server cannot start or run (bind failure, missing privilege...)."""


class BenchError(FastDNSError):
    """fastdns-bench was given bad input (query file, cluster file, target)."""
