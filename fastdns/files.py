"""Reading the files a configuration names, with the bound every file read has."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable

__all__ = ["FilePoller", "FileRefused", "read_limited"]


class FileRefused(ValueError):
    """A file that is not read: not a regular file, or over its size limit."""


def read_limited(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """The bytes of regular file ``path`` if it has at most ``limit`` of them.

    Raises :class:`FileRefused` (``not a regular file`` / ``larger than …``, so
    ``/dev/zero`` or a runaway file is never read whole) or :class:`OSError`."""
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise FileRefused("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"larger than the {limit} bytes a {what} may have")
    return data


class FilePoller:
    """A thread that calls ``check()`` every ``interval`` seconds until :meth:`stop`
    (a source's reload of the files it compiled): ``check`` returns nothing; an
    exception is logged as ``what`` and the polling goes on (the last good answers
    stay)."""

    def __init__(self, interval: float, check: Callable[[], None], what: str, name: str) -> None:
        self._interval = interval
        self._check = check
        self._what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._check()
            except Exception:  # keep watching whatever happens; the error is logged
                logging.getLogger("fastdns.files").exception("%s failed", self._what)

    def stop(self) -> None:
        """Stop polling (waits for a check in progress, at most 5 s)."""
        self._stop.set()
        self._thread.join(5)
