"""The ``reload`` plugin: notice that the Corefile changed.

:class:`CorefileWatcher` re-reads the Corefile every ``interval`` seconds
± ``jitter``/2 (CoreDNS's reload timing) on a daemon thread and calls
``on_change(text)`` when the SHA-512 of its content differs from the one
running.  It compares *content*, re-opening the path each time, so a
Kubernetes ConfigMap update — an atomic flip of the ``..data`` symlink to a
new timestamped directory, with the file's own mtime unchanged — is seen like
an edit in place.  A file that cannot be read is reported through
``on_error`` and checked again at the next tick.  :meth:`check_now` (SIGHUP)
checks at once.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable

from fastdns.errors import FastDNSError

log = logging.getLogger("fastdns.coordinator.reload")

__all__ = ["CorefileWatcher", "digest"]


def digest(text: str) -> str:
    """The SHA-512 hex digest CoreDNS's reload logs and exports for a Corefile."""
    return hashlib.sha512(text.encode()).hexdigest()


class CorefileWatcher:
    """Polls ``read()`` (the Corefile's current text) and reports changes."""

    def __init__(self, read: Callable[[], str], current: str, interval: float, jitter: float,
                 on_change: Callable[[str], None],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.read = read
        self.hash = digest(current)
        self.interval = interval
        self.jitter = jitter
        self.on_change = on_change
        self.on_error = on_error
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="corefile-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)

    def check_now(self) -> None:
        """Check at once (SIGHUP); safe from a signal handler."""
        self._wake.set()

    def next_delay(self) -> float:
        j = random.uniform(-self.jitter / 2, self.jitter / 2) if self.jitter else 0.0
        return max(0.1, self.interval + j)

    def accepted(self, text: str) -> None:
        """``text`` is now the running configuration (after a good reload)."""
        self.hash = digest(text)

    def check(self) -> bool:
        """Read once; True if the content changed (``on_change`` was called)."""
        try:
            text = self.read()
        except (OSError, UnicodeDecodeError, FastDNSError) as exc:  # unreadable now: keep the
            # running config (a ConfigError: not a regular file, too big, not UTF-8, placeholders)
            if self.on_error is not None:
                self.on_error(str(exc))
            return False
        h = digest(text)
        if h == self.hash:
            return False
        self.hash = h          # a broken file is reported once, not at every tick
        self.on_change(text)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.next_delay())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # never let the watcher die
                log.exception("checking the Corefile")
