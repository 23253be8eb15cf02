"""Remove what a coordinator killed with SIGKILL left behind.

A coordinator that is stopped normally removes its shared-memory segments
(``/dev/shm/fastdns-<pid>-…``) and its IPC directory (``$TMPDIR/fastdns-ipc-<pid>-…``);
one killed outright cannot (its workers die with it: PR_SET_PDEATHSIG).  The
next coordinator removes those whose owner ``<pid>`` is no longer running.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("fastdns.coordinator")

SHM_DIR = Path("/dev/shm")
_OWNER = re.compile(r"^fastdns-(?:ipc-)?(\d+)-")


def ipc_prefix() -> str:
    """The IPC directory prefix naming this process as its owner."""
    return f"fastdns-ipc-{os.getpid()}-"


def _dead(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep() -> list[str]:
    """Delete shm segments and IPC directories whose owning coordinator is gone."""
    removed = []
    for folder in (SHM_DIR, Path(tempfile.gettempdir())):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            m = _OWNER.match(entry.name)
            if not m or not _dead(int(m.group(1))):
                continue
            if folder == SHM_DIR and not entry.name.startswith("fastdns-ipc-"):
                entry.unlink(missing_ok=True)
            elif entry.name.startswith("fastdns-ipc-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                continue
            removed.append(str(entry))
    if removed:
        log.info("removed %d leftovers of coordinators that were killed: %s", len(removed),
                 ", ".join(removed))
    return removed
