"""Spawn, reap and restart worker processes (gunicorn's arbiter, in small).

Workers are fresh interpreters (``python -m fastdns.worker.main``): they
inherit no sockets and reseed their random generators.  A worker that exits
with :data:`~fastdns.ipc.schema.EXIT_CONFIG` is not respawned (the
configuration cannot work); others are restarted with a backoff that grows
while they keep dying young.
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

log = logging.getLogger("fastdns.coordinator.supervisor")

YOUNG = 2.0            # a worker dying sooner than this after start counts as a crash loop
MAX_BACKOFF = 10.0


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


class Supervisor:
    """Keeps ``n`` workers alive."""

    def __init__(self, n: int, pub: str, router: str, shm: str | None, log_level: str) -> None:
        self.slots = [Slot(i) for i in range(n)]
        self.pub, self.router, self.shm, self.log_level = pub, router, shm, log_level
        self.fatal: str | None = None
        self.restarts_total = 0

    def command(self, index: int) -> list[str]:
        cmd = [sys.executable, "-m", "fastdns.worker.main", "--index", str(index),
               "--pub", self.pub, "--router", self.router, "--log-level", self.log_level]
        if self.shm:
            cmd += ["--shm", self.shm]
        return cmd

    def spawn(self, slot: Slot) -> None:
        slot.proc = subprocess.Popen(self.command(slot.index), stdin=subprocess.DEVNULL,
                                     close_fds=True)
        slot.started = time.monotonic()
        slot.ready = False
        log.info("worker %d started (pid %d)", slot.index, slot.proc.pid)

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def mark_ready(self, index: int) -> None:
        if 0 <= index < len(self.slots):
            self.slots[index].ready = True

    @property
    def all_ready(self) -> bool:
        return all(s.ready for s in self.slots)

    def reap(self) -> None:
        """Notice dead workers and restart them (after their backoff)."""
        now = time.monotonic()
        for slot in self.slots:
            p = slot.proc
            if p is not None and p.poll() is not None:
                code = p.returncode
                slot.proc = None
                slot.ready = False
                if code == schema.EXIT_CONFIG:
                    self.fatal = self.fatal or f"worker {slot.index} cannot run this configuration"
                    continue
                young = now - slot.started < YOUNG
                slot.backoff = min(MAX_BACKOFF, slot.backoff * 2 or 0.1) if young else 0.0
                slot.restart_at = now + slot.backoff
                log.warning("worker %d (pid %d) exited with %s; restarting in %.1fs",
                            slot.index, p.pid, _describe(code), slot.backoff)
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
