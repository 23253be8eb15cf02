"""fastdns: a fast DNS server for Kubernetes (cluster DNS and node-local cache).

The public API is re-exported here; see README.md for runnable examples.
"""

from fastdns._version import __version__
from fastdns.errors import (
    BenchError,
    ConfigError,
    EncodeError,
    FastDNSError,
    FormatError,
    IPCProtocolError,
    KubernetesError,
    ServerError,
    SnapshotError,
)

__all__ = [
    "__version__",
    "Server",
    "BenchError",
    "ConfigError",
    "EncodeError",
    "FastDNSError",
    "FormatError",
    "IPCProtocolError",
    "KubernetesError",
    "ServerError",
    "SnapshotError",
]


def __getattr__(name: str) -> object:
    """``fastdns.Server`` is imported on first use (it pulls in ZeroMQ and the workers)."""
    if name == "Server":
        try:
            from fastdns.server import Server
        except ImportError as exc:
            from fastdns._build import missing_extension

            why = missing_extension(exc)
            if why is None:
                raise
            raise ServerError(why) from None
        return Server
    raise AttributeError(f"module 'fastdns' has no attribute {name!r}")
