"""Reading the files a configuration names, with the bound every file read has."""

from __future__ import annotations

import os
import stat

__all__ = ["FileRefused", "read_limited"]


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
