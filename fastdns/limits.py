"""Every limit on what a client or an upstream can make a worker hold, in one place.

Past a limit fastdns refuses the new thing (a connection closed at accept, a
query answered SERVFAIL or REFUSED) and keeps serving everything else.  The
C engine has no fixed-size descriptor table: its poll set is sized from the
descriptors Python hands it, which these limits bound.
"""

from __future__ import annotations

import resource

__all__ = [
    "TCP_MAX_CONNECTIONS", "TCP_MAX_PER_SOURCE", "TCP_EVICT_IDLE", "TCP_IDLE_TIMEOUT",
    "TCP_MAX_BUFFERED", "TCP_ACCEPT_BATCH",
    "UDP_USES_PER_SOCKET", "UPSTREAM_UDP_SOCKETS", "UPSTREAM_PORTS", "UPSTREAM_MAX_PENDING",
    "UPSTREAM_TCP_SLACK",
    "UPSTREAM_TCP_CONNS", "UPSTREAM_TCP_CONNS_PER_UPSTREAM", "UPSTREAM_TCP_PIPELINE",
    "CONFIG_FILE_MAX", "SNAPSHOT_FILE_MAX", "HOSTS_FILE_MAX", "WORKER_FIXED_FDS", "worker_descriptors", "raise_descriptor_limit",
]

# -- clients over TCP (per worker) -------------------------------------------------------

TCP_MAX_CONNECTIONS = 1000      # open client connections; at the limit the oldest idle one
                                # (idle >= TCP_EVICT_IDLE) makes room, else the new one is closed
TCP_MAX_PER_SOURCE = 256        # open client connections from one source address
TCP_EVICT_IDLE = 1.0            # seconds idle before a connection may be closed for a new one
TCP_IDLE_TIMEOUT = 10.0         # seconds a connection may sit without a complete query
TCP_MAX_BUFFERED = 1 << 20      # unsent answer bytes per connection before it is closed
TCP_ACCEPT_BATCH = 64           # connections accepted per wake-up of a listener

# -- upstreams (per worker) ----------------------------------------------------------------

UDP_USES_PER_SOCKET = 1         # (Python forwarder) queries per upstream UDP socket before a new
                                # port: one, as the C forwarder (a known port is a spray target)
UPSTREAM_UDP_SOCKETS = 512      # (Python forwarder) open upstream UDP sockets; at the cap the current
                                # one is reused
UPSTREAM_PORTS = 4096           # (C forwarder) upstream queries in flight, each on its own socket
                                # and random port (Unbound's outgoing-range); past it: SERVFAIL
UPSTREAM_MAX_PENDING = 10_000   # client queries waiting on upstreams (each forwarder, C and
                                # Python); past it new misses get REFUSED
UPSTREAM_TCP_SLACK = 0.5        # a TCP/TLS exchange ends read_timeout + this after it is sent
                                # (connect, handshake and reads included)
UPSTREAM_TCP_CONNS = 64         # (C forwarder) persistent upstream TCP connections, all
                                # upstreams together (they count in UPSTREAM_PORTS too)
UPSTREAM_TCP_CONNS_PER_UPSTREAM = 4   # TCP/TLS connections per upstream, both forwarders
                                # (= FW_TCP_PER_UP in _loop_forward.pxi)
UPSTREAM_TCP_PIPELINE = 256     # queries in flight per connection, both forwarders (= FW_TCP_PIPE,
                                # streams.MAX_PIPELINE); every connection full: the next upstream

# -- answers ---------------------------------------------------------------------------------

NSID_MAX = 512                  # bytes of an `nsid` identifier (it rides in every answer that asks)

# -- files the coordinator reads ---------------------------------------------------------

CONFIG_FILE_MAX = 1 << 20       # bytes of one Corefile or imported file (regular files only)
SNAPSHOT_FILE_MAX = 256 << 20   # bytes of a `kubernetes { snapshot FILE }` (regular files only)
HOSTS_FILE_MAX = 64 << 20       # bytes of a `hosts FILE` (blocklists of ~1M lines fit)

# -- descriptors (per worker) --------------------------------------------------------------

WORKER_FIXED_FDS = 256          # listeners, ZeroMQ, shared memory, logs, wake-up pipes


def worker_descriptors(upstreams: int = 0) -> int:
    """Descriptors one worker may need with every limit above reached at once.

    Per upstream: the Python forwarder's TCP/TLS connections; the C forwarder's are
    part of UPSTREAM_PORTS.
    """
    return (WORKER_FIXED_FDS + TCP_MAX_CONNECTIONS + UPSTREAM_UDP_SOCKETS + UPSTREAM_PORTS
            + upstreams * UPSTREAM_TCP_CONNS_PER_UPSTREAM)


def raise_descriptor_limit(need: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to ``need`` (at most the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return int(soft)
