"""``fastdns.Server``: run the server from Python (tests, simulators, embedding).

The same thing ``fastdns serve`` runs — the coordinator (Corefile plan,
Kubernetes sources, publisher, supervisor) in a background thread of the
calling process, and worker processes answering on SO_REUSEPORT sockets::

    import fastdns

    with fastdns.Server(path="Corefile", workers=2, port=0) as srv:
        host, port = srv.listeners[0]
        ...                      # query host:port with any DNS client

``workers=0`` runs a single worker in a thread of the calling process instead
of a process (no fork, no exec: handy for tests and embedding; the worker's
answer loop releases the GIL while it waits and answers).  Signal handlers
are not installed in that mode: the embedding program owns its signals.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

from fastdns import demo
from fastdns.config.parser import read_config_text
from fastdns.coordinator.main import Coordinator
from fastdns.errors import FastDNSError, ServerError
from fastdns.ipc import schema

__all__ = ["Server"]

log = logging.getLogger("fastdns.server")


class Server:
    """A running fastdns server, started and stopped from Python.

    ``corefile`` is the Corefile text, or give ``path`` to a Corefile (relative
    files such as ``snapshot cluster.yaml`` are taken from its directory; for
    ``corefile`` text, from the current directory).  With neither, the bundled
    demo (a small cluster on 127.0.0.1:5353).

    ``workers``: worker processes (None: one per available core; 0: one worker
    in a thread of this process).  ``port``: the port of server blocks that
    name none (None: 53, or 5353 for the demo; 0: a port free on 127.0.0.1
    right now, see :attr:`listeners`).

    :meth:`start` returns at once; :meth:`wait_ready` blocks until every worker
    has its tables and sockets (and the Kubernetes sources have synced).  As a
    context manager it does both on entry and :meth:`stop` on exit.  Errors
    are :class:`~fastdns.errors.ConfigError` (the Corefile, raised by the
    constructor), other :class:`~fastdns.errors.FastDNSError` subclasses from
    the sources (e.g. a broken snapshot), or :class:`~fastdns.errors.ServerError`.
    """

    def __init__(self, corefile: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 workers: int | None = None, port: int | None = None,
                 log_level: str = "warning") -> None:
        if corefile is not None and path is not None:
            raise ValueError("give the Corefile as text or as a path, not both")
        if workers is not None and workers < 0:
            raise ValueError("workers must be >= 0")
        is_demo = corefile is None and path is None
        if is_demo:
            path = demo.corefile_path()
        if path is not None:
            filename = str(path)
            corefile = read_config_text(path)
        else:
            filename = "Corefile"
        assert corefile is not None
        if port == 0:
            port = _free_port()
        elif port is None:
            port = demo.PORT if is_demo else 53
        self.in_process = workers == 0
        self._coord = _Coordinator(corefile, filename, default_port=port,
                                   workers=1 if self.in_process else workers,
                                   log_level=log_level, in_process=self.in_process)
        self._thread: threading.Thread | None = None
        self._exc: BaseException | None = None
        self._done = threading.Event()

    # -- state ------------------------------------------------------------------------

    @property
    def listeners(self) -> list[tuple[str, int]]:
        """``(address, port)`` of every socket the workers bind (address "" = all)."""
        return [(li.address or "", li.port) for li in self._coord.plan.listeners]

    @property
    def plan(self) -> Any:
        """The parsed Corefile (:class:`fastdns.config.plan.Plan`)."""
        return self._coord.plan

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (this process's PID with ``workers=0``)."""
        sup = self._coord.supervisor
        return sup.pids() if sup is not None else []

    @property
    def running(self) -> bool:
        """Started and not stopped (nor failed)."""
        return self._thread is not None and not self._done.is_set()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Server:
        """Start the coordinator thread (and through it the workers); returns at once."""
        if self._thread is not None:
            raise ServerError("this Server was already started")
        self._thread = threading.Thread(target=self._run, name="fastdns-coordinator",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._coord.run()
        except BaseException as exc:  # noqa: BLE001 - handed to wait_ready()
            self._exc = exc
        finally:
            self._done.set()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server answers from complete tables.

        Raises the error that stopped it, or :class:`ServerError` on a timeout.
        """
        if self._thread is None:
            raise ServerError("start() the Server first")
        deadline = time.monotonic() + timeout
        while True:
            self._raise_failure()
            if self._coord.started.is_set() and self._coord.synced:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(f"fastdns server not ready after {timeout:g}s")
            self._done.wait(min(left, 0.02))

    def _raise_failure(self) -> None:
        if self._exc is not None:
            if isinstance(self._exc, FastDNSError):
                raise self._exc
            raise ServerError(f"the coordinator failed: {self._exc!r}") from self._exc
        if self._coord.error:
            raise ServerError(self._coord.error)
        if self._done.is_set():
            raise ServerError("the server stopped")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the workers and the coordinator; remove sockets, IPC files and shared memory."""
        if self._thread is None:
            return
        self._coord.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ServerError(f"the server did not stop within {timeout:g}s")

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _InProcessWorker:
    """The :class:`Supervisor` interface over one worker thread in this process."""

    def __init__(self, pub: str, router: str, shm: str | None) -> None:
        self.pub, self.router, self.shm = pub, router, shm
        self.fatal: str | None = None
        self.restarts_total = 0
        self.ready = False
        self.worker: Any = None
        self.thread: threading.Thread | None = None
        self.code: int | None = None

    def start(self) -> None:
        from fastdns.worker.main import Worker

        self.worker = Worker(0, self.pub, self.router, self.shm)
        self.thread = threading.Thread(target=self._run, name="fastdns-worker-0", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.code = self.worker.run()
        except BaseException as exc:  # SystemExit from a lost coordinator too
            log.exception("in-process worker failed")
            self.code = -1
            self.fatal = f"the in-process worker failed: {exc!r}"
        if self.code != schema.EXIT_OK:
            # a worker process would simply exit; here its ZeroMQ context must be
            # terminated (else a later garbage collection blocks in zmq_ctx_term)
            try:
                self.worker.close()
            except Exception:  # pragma: no cover - best effort
                log.exception("closing the in-process worker")

    def pids(self) -> list[int]:
        return [os.getpid()] if self.thread is not None and self.thread.is_alive() else []

    def mark_ready(self, index: int) -> None:
        if index == 0:
            self.ready = True

    @property
    def all_ready(self) -> bool:
        return self.ready

    def serving(self, gens: dict[int, int], gen: int) -> bool:
        """The worker thread alive, ready, on generation ``gen`` (as Supervisor.serving)."""
        return (self.ready and self.thread is not None and self.thread.is_alive()
                and gens.get(0) == gen)

    def reap(self) -> None:
        if self.thread is not None and not self.thread.is_alive() and self.fatal is None:
            if self.code == schema.EXIT_CONFIG:
                self.fatal = "the worker cannot run this configuration"
            else:
                self.fatal = f"the in-process worker stopped (code {self.code})"

    def stop(self, timeout: float = 5.0) -> None:
        if self.worker is not None:
            self.worker.stopping = True
        if self.thread is not None:
            self.thread.join(timeout)


class _Coordinator(Coordinator):
    """The coordinator, with the worker in a thread when ``in_process``."""

    def __init__(self, *args: Any, in_process: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.in_process = in_process

    def _make_supervisor(self) -> Any:
        if self.in_process:
            return _InProcessWorker(self.publisher.pub_ep, self.publisher.router_ep,
                                    self.cache_name)
        return super()._make_supervisor()


def _free_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP on ``host`` now (someone may take it before we bind)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
            except OSError:
                continue
            return int(port)
    raise ServerError("no free port found")
