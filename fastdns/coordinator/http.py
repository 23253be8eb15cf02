"""The coordinator's HTTP endpoints: ``/health``, ``/ready``, ``/metrics``.

One ``ThreadingHTTPServer`` per distinct address, each on its own daemon
thread, never in the query path.  What they answer comes from a ``state``
object (the coordinator):

* ``/health`` (``health [ADDR]``): 200 ``OK`` while the process serves,
  including during lameduck (as CoreDNS's *health*).
* ``/ready`` (``ready [ADDR]``): 200 ``OK`` when ``state.ready()`` is true;
  else 503 and the names of the plugins not ready, one per line (CoreDNS's
  *ready*).  With ``monitor until-ready`` (the default) it stays 200 once it
  has been; in lameduck it answers 503 (CoreDNS's *ready* does too).
* ``/metrics`` (``prometheus [ADDR]``): the Prometheus text format from a
  registry holding :class:`fastdns.metrics.FastDNSCollector`.

Addresses as in the Corefile: host "" means every address.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fastdns.errors import ServerError

log = logging.getLogger("fastdns.coordinator.http")

__all__ = ["Endpoints", "routes_for"]

Route = Callable[[], tuple[int, str, bytes]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], routes: dict[str, Route]) -> None:
        import socket
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.routes = routes
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._send(404, "text/plain; charset=utf-8", b"404 page not found\n")
            return
        try:
            self._send(*route())
        except Exception:  # an endpoint must answer, whatever broke
            log.exception("%s", self.path)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _addr(conf: Any) -> tuple[str, int]:
    host = conf.host or "0.0.0.0"
    return host.strip("[]"), int(conf.port)


def routes_for(plan: Any, state: Any, registry: CollectorRegistry) -> dict[tuple[str, int],
                                                                             dict[str, Route]]:
    """Address → {path: handler} for the plan's health/ready/prometheus plugins."""
    out: dict[tuple[str, int], dict[str, Route]] = {}
    ready_latch = {"was": False}

    def health() -> tuple[int, str, bytes]:
        return 200, "text/plain; charset=utf-8", b"OK"

    def ready_for(monitor: str) -> Route:
        def ready() -> tuple[int, str, bytes]:
            if state.lameduck:
                return 503, "text/plain; charset=utf-8", b"lameduck\n"
            if monitor == "until-ready" and ready_latch["was"]:
                return 200, "text/plain; charset=utf-8", b"OK"
            missing = state.not_ready()
            if not missing:
                ready_latch["was"] = True
                return 200, "text/plain; charset=utf-8", b"OK"
            return 503, "text/plain; charset=utf-8", ("\n".join(missing) + "\n").encode()
        return ready

    def metrics() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    for name, path, make in (("health", "/health", lambda c: health),
                             ("ready", "/ready", lambda c: ready_for(c.monitor)),
                             ("prometheus", "/metrics", lambda c: metrics)):
        for conf in plan.confs(name):
            out.setdefault(_addr(conf), {})[path] = make(conf)
    return out


class Endpoints:
    """The running HTTP servers; :meth:`update` follows a reloaded plan."""

    def __init__(self, state: Any, registry: CollectorRegistry) -> None:
        self.state = state
        self.registry = registry
        self.servers: dict[tuple[str, int], _Server] = {}

    def update(self, plan: Any) -> None:
        """Serve what ``plan`` asks: keep servers whose address stays (with new
        routes), stop the others, start new ones.  ServerError if one cannot bind."""
        want = routes_for(plan, self.state, self.registry)
        for addr in list(self.servers):
            if addr not in want:
                self._stop(addr)
        for addr, routes in want.items():
            if addr in self.servers:
                self.servers[addr].routes = routes
                continue
            try:
                srv = _Server(addr, routes)
            except OSError as exc:
                raise ServerError(f"cannot listen on {addr[0]}:{addr[1]} for "
                                  f"{', '.join(routes)}: {exc.strerror}") from None
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                             name=f"http-{addr[1]}", daemon=True).start()
            self.servers[addr] = srv
            log.info("serving %s on %s:%d", " ".join(sorted(routes)), *addr)

    def _stop(self, addr: tuple[str, int]) -> None:
        srv = self.servers.pop(addr)
        srv.shutdown()
        srv.server_close()

    def close(self) -> None:
        for addr in list(self.servers):
            self._stop(addr)
