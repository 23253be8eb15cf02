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
