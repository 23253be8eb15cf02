"""Workers import the coordinator's own fastdns, and one that cannot start stops the server.

Each test runs `fastdns serve` from a copy of the package in a temporary
directory (``python -m fastdns`` there imports that copy), sometimes broken
the way real installations break; the workers must follow the copy the
coordinator runs, or the coordinator must say in one line why they cannot
start and exit non-zero instead of respawning them behind a refusing port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query

import fastdns
from fastdns.server import _free_port

PKG = Path(fastdns.__file__).resolve().parent


def copy_package(dest: Path) -> Path:
    """The running fastdns (compiled extensions included) as ``dest/fastdns``."""
    shutil.copytree(PKG, dest / "fastdns",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.html"))
    return dest / "fastdns"


def serve(cwd: Path, port: int, timeout: float = 120.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "fastdns", "serve", "--workers", "2",
                           "--port", str(port)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_worker_that_cannot_import_stops_the_server_with_one_line(tmp_path: Path) -> None:
    pkg = copy_package(tmp_path)
    (pkg / "worker" / "miss.py").write_text("import fastdns._not_built  # a broken install\n")
    r = serve(tmp_path, _free_port())
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("fastdns: worker ") and "cannot start" in last, r.stderr
    assert "fastdns._not_built" in last and str(pkg) in last, last
    assert "Traceback" not in r.stderr and "restarting" not in r.stderr, r.stderr


def test_workers_dying_before_ready_are_given_up_after_a_few(tmp_path: Path) -> None:
    pkg = copy_package(tmp_path)
    (pkg / "worker" / "sync.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    r = serve(tmp_path, _free_port())
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "died before it was ready 3 times in a row" in last, r.stderr
    assert "SIGKILL" in last, last
    # respawned twice (with backoff) before giving up, not forever
    assert 1 <= r.stderr.count("restarting in") <= 4, r.stderr


def test_workers_follow_the_coordinator_not_the_current_directory(tmp_path: Path) -> None:
    """Started from a directory holding another, unbuilt fastdns: the workers still
    import the copy the coordinator runs (here: through PYTHONPATH)."""
    pkg = copy_package(tmp_path / "installed")
    shadow = tmp_path / "clone" / "fastdns"
    shadow.mkdir(parents=True)
    for name in ("__init__.py", "_version.py", "errors.py"):
        shutil.copy(PKG / name, shadow / name)
    (shadow / "worker").mkdir()
    (shadow / "worker" / "__init__.py").write_text("")
    launcher = tmp_path / "bin" / "fastdns"          # what pip writes as the console script
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom fastdns.cli.main import main\nsys.exit(main())\n")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(pkg.parent))
    proc = subprocess.Popen([sys.executable, str(launcher), "serve", "--workers", "2",
                             "--port", str(port)], cwd=shadow.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        q = dns.message.make_query("nginx-svc.default.svc.cluster.local.", "A")
        answer = None
        deadline = time.monotonic() + 60
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = dns.query.udp(q, "127.0.0.1", port=port, timeout=1)
            except Exception:
                time.sleep(0.2)
        assert answer is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert answer.answer[0][0].address == "10.96.0.50"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "restarting" not in out and "Traceback" not in out, out
