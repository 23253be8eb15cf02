"""Upstream health probes (``forward``'s ``health_check``) → published health flags.

One thread per upstream sends ``. IN NS`` (or ``health_check … domain``) every
``health_check`` seconds over the upstream's transport (UDP, TCP with
``force_tcp``, TLS for ``tls://``).  Any well-formed answer with our ID and
question is healthy (as CoreDNS: the rcode does not matter).  After
``max_fails`` consecutive failed probes the upstream is marked down; the next
answered probe marks it up.  Changes are handed to the coordinator's main
thread (``submit``), which updates the flags and publishes
``["health", block, [bool, ...]]`` (one flag per upstream of the block's
``forward`` directives, in Corefile order).

Every failed probe is counted (``coredns_forward_healthcheck_failures_total``)
in :attr:`UpstreamHealth.counters`, the coordinator's row of the shared
counter segment when set (the coordinator's ops set it), at the upstream's
slot: its index in :func:`fastdns.metrics.forward_upstreams`, which is its
index in :attr:`UpstreamHealth.targets`.  After :meth:`UpstreamHealth.stop`
(a reload replaces the object) nothing more is counted or published.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

from fastdns.config.plan import Plan
from fastdns.ipc import schema
from fastdns.plugins.forward.conf import ForwardConf, Upstream

__all__ = ["UpstreamHealth", "probe"]

log = logging.getLogger("fastdns.coordinator.upstreams")

PROBE_TIMEOUT = 1.0


def _probe_query(conf: ForwardConf, qid: int) -> bytes:
    from fastdns.wire import name_from_text

    return (struct.pack("!HHHHHH", qid, 0x0100 if conf.health_check_recursion else 0, 1, 0, 0, 0)
            + name_from_text(conf.health_check_domain) + struct.pack("!HH", 2, 1))


def probe(up: Upstream, conf: ForwardConf, timeout: float = PROBE_TIMEOUT,
          tls: ssl.SSLContext | None = None) -> bool:
    """One health probe of ``up``: True if it answered our question."""
    qid = random.getrandbits(16)
    query = _probe_query(conf, qid)
    fam = socket.AF_INET6 if ":" in up.host else socket.AF_INET
    try:
        if up.scheme == "tls" or conf.force_tcp:
            with socket.create_connection((up.host, up.port), timeout=timeout) as raw:
                conn = raw
                if up.scheme == "tls":
                    assert tls is not None
                    conn = tls.wrap_socket(raw, server_hostname=conf.tls_servername or up.host)
                conn.settimeout(timeout)
                conn.sendall(len(query).to_bytes(2, "big") + query)
                n = int.from_bytes(_recv_exact(conn, 2), "big")
                data = _recv_exact(conn, n)
                if conn is not raw:
                    conn.close()
        else:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.connect((up.host, up.port))
                s.send(query)
                while True:
                    data = s.recv(65535)
                    if data[:2] == query[:2]:
                        break
    except (OSError, ssl.SSLError, EOFError):
        return False
    return len(data) >= 12 and bool(data[2] & 0x80) and data[12:len(query)] == query[12:]


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


class UpstreamHealth:
    """Probes every ``forward`` upstream of a plan; keeps and publishes the flags."""

    def __init__(self, plan: Plan, submit: Callable[[Callable[[], None]], None],
                 publish: Callable[[list[list[Any]]], None]) -> None:
        self.submit = submit
        self.publish = publish
        self.flags: dict[int, list[bool]] = {}
        self.targets: list[tuple[int, int, Upstream, ForwardConf]] = []
        for bi, server in enumerate(plan.servers):
            n = 0
            for conf in server.plugins_named("forward"):
                for up in conf.to:
                    self.targets.append((bi, n, up, conf))
                    n += 1
            if n:
                self.flags[bi] = [True] * n
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.counters: Any = None           # the coordinator's counter row (uint64 memoryview)

    def block_health(self, bi: int) -> list[bool]:
        """Current flags of block ``bi`` (for snapshots; main thread)."""
        return list(self.flags.get(bi, []))

    def fill(self, blocks: list[dict[str, Any]]) -> None:
        """Put the flags into snapshot blocks."""
        for bi, b in enumerate(blocks):
            if bi in self.flags:
                b["health"] = self.block_health(bi)

    def start(self) -> None:
        for slot, (bi, i, up, conf) in enumerate(self.targets):
            if conf.health_check <= 0:
                continue
            t = threading.Thread(target=self._run, args=(bi, i, up, conf, slot), daemon=True,
                                 name=f"fastdns-health-{up}")
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(PROBE_TIMEOUT + 1)

    def _set(self, bi: int, i: int, healthy: bool) -> None:
        """(main thread) record and publish one upstream's new state."""
        if self.stop_event.is_set():        # replaced by a reload: its blocks may differ
            return
        flags = self.flags[bi]
        if flags[i] == healthy:
            return
        flags[i] = healthy
        self.publish([[schema.OP_HEALTH, bi, list(flags)]])

    def _count_failure(self, slot: int) -> None:
        row = self.counters
        if row is None or self.stop_event.is_set():
            return
        from fastdns._loop import counter_layout
        from fastdns.stats import forward_offset

        try:
            row[forward_offset(slot) + counter_layout()["F_HC_FAIL"]] += 1
        except (IndexError, ValueError):    # past the counted slots, or the segment is closed
            pass

    def _run(self, bi: int, i: int, up: Upstream, conf: ForwardConf, slot: int = -1) -> None:
        tls = None
        if up.scheme == "tls":
            from fastdns.worker.forwarder import _client_tls
            tls = _client_tls(conf)
        fails = 0
        healthy = True
        interval = conf.health_check
        timeout = min(PROBE_TIMEOUT, max(conf.read_timeout, 0.05))
        while not self.stop_event.wait(interval if healthy else min(interval, 0.5)):
            ok = probe(up, conf, timeout, tls)
            if ok:
                fails = 0
                now_healthy = True
            else:
                fails += 1
                self._count_failure(slot)
                now_healthy = not (conf.max_fails and fails >= conf.max_fails)
            if now_healthy != healthy:
                healthy = now_healthy
                log.info("upstream %s is %s", up, "up again" if healthy else
                         f"down ({fails} failed health checks)")
                self.submit(functools.partial(self._set, bi, i, healthy))
