"""A coordinator killed with SIGKILL leaves segments behind; the next one removes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastdns._testing.server import free_port


def owned_by(pid: int) -> list[Path]:
    import tempfile
    return [p for folder in (Path("/dev/shm"), Path(tempfile.gettempdir()))
            for p in folder.iterdir()
            if p.name.startswith((f"fastdns-{pid}-", f"fastdns-ipc-{pid}-"))]


def test_killed_coordinator_leftovers_are_swept(tmp_path):
    core = tmp_path / "Corefile"
    core.write_text(". {\n  bind 127.0.0.1\n  cache 30\n  prometheus 127.0.0.1:%d\n}\n" % free_port())
    p = subprocess.Popen([sys.executable, "-m", "fastdns", "serve", "--conf", str(core),
                          "--port", str(free_port()), "--workers", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(owned_by(p.pid)) < 2:
            time.sleep(0.1)
        left = owned_by(p.pid)
        assert any(x.name.startswith("fastdns-ipc-") for x in left)
        assert any(str(x).startswith("/dev/shm/") for x in left)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    time.sleep(0.5)                        # its worker dies with it (PR_SET_PDEATHSIG)
    assert owned_by(p.pid), "SIGKILL left nothing: the test proves nothing"
    from fastdns.coordinator.leftovers import sweep
    removed = sweep()
    assert not owned_by(p.pid)
    assert all(str(p.pid) in r for r in removed if f"-{p.pid}-" in r)
    assert os.path.exists("/dev/shm")
