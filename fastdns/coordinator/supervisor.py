"""Spawn, reap and restart worker processes (gunicorn's arbiter, in small).

Workers are fresh interpreters started through :mod:`fastdns.worker.boot`
(they import this process's own ``fastdns``, whatever the current directory):
they inherit no sockets and reseed their random generators.  Until it is
ready, each worker holds the write end of a pipe on which it says, in one
line, why it could not start.

A worker that exits with :data:`~fastdns.ipc.schema.EXIT_CONFIG` or
:data:`~fastdns.ipc.schema.EXIT_STARTUP` is not respawned (the configuration
or the installation cannot work), nor one that died before it was ready
:data:`STARTUP_FAILURES` times in a row: the coordinator stops with one line
saying why.  Workers that die after they were ready are restarted with a
backoff that grows while they keep dying young.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from fastdns.ipc import schema
from fastdns.worker import boot

log = logging.getLogger("fastdns.coordinator.supervisor")

YOUNG = 2.0            # a worker dying sooner than this after start counts as a crash loop
MAX_BACKOFF = 10.0
STARTUP_FAILURES = 3   # deaths before ready, in a row, after which the coordinator gives up


@dataclass
class Slot:
    index: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    backoff: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0
    ready: bool = False
    history: list[int] = field(default_factory=list)
    status_fd: int | None = None      # read end of the worker's startup pipe
    early_deaths: int = 0             # deaths before ready since it was last ready


class Supervisor:
    """Keeps ``n`` workers alive."""

    def __init__(self, n: int, pub: str, router: str, shm: str | None, log_level: str) -> None:
        self.slots = [Slot(i) for i in range(n)]
        self.pub, self.router, self.shm, self.log_level = pub, router, shm, log_level
        self.fatal: str | None = None
        self.restarts_total = 0

    def command(self, index: int, status_fd: int | None = None) -> list[str]:
        cmd = [sys.executable, "-P", "-c", boot.BOOT, "--index", str(index),
               "--pub", self.pub, "--router", self.router, "--log-level", self.log_level]
        if self.shm:
            cmd += ["--shm", self.shm]
        if status_fd is not None:
            cmd += ["--status-fd", str(status_fd)]
        return cmd

    def spawn(self, slot: Slot) -> None:
        self._close_status(slot)
        r, w = os.pipe()
        os.set_blocking(r, False)
        try:
            slot.proc = subprocess.Popen(self.command(slot.index, w), stdin=subprocess.DEVNULL,
                                         close_fds=True, pass_fds=(w,), env=boot.worker_env())
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        slot.status_fd = r
        slot.started = time.monotonic()
        slot.ready = False
        log.info("worker %d started (pid %d)", slot.index, slot.proc.pid)

    @staticmethod
    def _close_status(slot: Slot) -> None:
        if slot.status_fd is not None:
            os.close(slot.status_fd)
            slot.status_fd = None

    def _startup_reason(self, slot: Slot) -> str:
        """What a worker that died before ready wrote on its pipe ("" if nothing)."""
        data = b""
        if slot.status_fd is not None:
            try:
                while len(data) < 4096:
                    chunk = os.read(slot.status_fd, 4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:                 # EAGAIN: a descendant still holds the write end
                pass
            self._close_status(slot)
        return data.decode("utf-8", "replace").strip()

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def mark_ready(self, index: int) -> None:
        if 0 <= index < len(self.slots):
            slot = self.slots[index]
            slot.ready = True
            slot.early_deaths = 0
            self._close_status(slot)

    @property
    def all_ready(self) -> bool:
        return all(s.ready for s in self.slots)

    def serving(self, gens: dict[int, int], gen: int) -> bool:
        """Every worker alive, ready, and on configuration generation ``gen``
        (``gens``: the generation each worker last reported ready at)."""
        return all(s.ready and s.proc is not None and s.proc.poll() is None
                   and gens.get(s.index) == gen for s in self.slots)

    def reap(self) -> None:
        """Notice dead workers and restart them (after their backoff)."""
        now = time.monotonic()
        for slot in self.slots:
            p = slot.proc
            if p is not None and p.poll() is not None:
                code = p.returncode
                was_ready = slot.ready
                slot.proc = None
                slot.ready = False
                reason = self._startup_reason(slot)
                if code in (schema.EXIT_CONFIG, schema.EXIT_STARTUP):
                    self.fatal = self.fatal or (
                        f"worker {slot.index} cannot start: {reason}" if reason else
                        f"worker {slot.index} cannot run this configuration")
                    continue
                if not was_ready:
                    slot.early_deaths += 1
                    what = reason or f"exited with {_describe(code)}"
                    if slot.early_deaths >= STARTUP_FAILURES:
                        self.fatal = self.fatal or (
                            f"worker {slot.index} died before it was ready "
                            f"{slot.early_deaths} times in a row; last: {what}")
                        continue
                young = now - slot.started < YOUNG
                slot.backoff = min(MAX_BACKOFF, slot.backoff * 2 or 0.1) if young else 0.0
                slot.restart_at = now + slot.backoff
                log.warning("worker %d (pid %d) exited with %s%s; restarting in %.1fs",
                            slot.index, p.pid, _describe(code),
                            f" before it was ready ({reason})" if reason else
                            "" if was_ready else " before it was ready", slot.backoff)
            if slot.proc is None and self.fatal is None and now >= slot.restart_at:
                slot.restarts += 1
                self.restarts_total += 1
                self.spawn(slot)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every worker, wait, SIGKILL what is left."""
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                try:
                    slot.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            p = slot.proc
            if p is None:
                continue
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop; killing it", slot.index)
                p.kill()
                p.wait()
            slot.proc = None
            self._close_status(slot)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)
