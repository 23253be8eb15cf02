"""A new user's first minutes: a fresh clone, `pip install .`, the README's run command.

This is the path users take and the editable install of the rest of the
suite hides: the package is built into a fresh virtualenv (non-editable),
then the README's run command is typed in the clone's root, where an
uncompiled ``fastdns/`` source tree sits on the current directory.  The demo
must answer ``dig``; so must ``fastdns.Server(workers=2)`` embedded in a
script run from that root.  Slow (one build, about a minute): deselect with
``-m 'not fresh_install'`` while iterating.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_PORT = 5353

pytestmark = pytest.mark.fresh_install


def readme_command(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```", (ROOT / "README.md").read_text())
    assert m, f"README.md has no {marker}"
    return m.group(1)


def fresh_clone(dest: Path) -> Path:
    """What `git clone` of this tree gives once its changes are committed: the
    tracked and the untracked-but-not-ignored files, no build products."""
    if not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} is not a git checkout: cannot tell source from build products")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    clone = dest / "fastdns-clone"
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            out = clone / os.fsdecode(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
    assert not list(clone.rglob("*.so")), "the clone must hold no compiled extension"
    return clone


def dig(name: str, port: int = DEMO_PORT, *extra: str) -> str:
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=2", "+tries=1",
                        *extra, name], capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


def wait_for_answer(name: str, want: str, proc: subprocess.Popen, port: int = DEMO_PORT,
                    timeout: float = 300.0) -> str:
    """dig until ``want`` comes back (the run command builds first: generous bound)."""
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        got = dig(name, port)
        if got == want:
            return got
        time.sleep(1.0)
    return got


def server_pid(proc: subprocess.Popen) -> int:
    """fastdns itself: the shell, or the child it forked (bash execs the last
    command of ``-c`` itself when it can)."""
    try:
        argv0 = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0]
        if not argv0.endswith(b"bash"):
            return proc.pid
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return int(kids[0]) if kids else proc.pid
    except OSError:
        return proc.pid


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    """Stop what we started (lameduck included); returns its output.  SIGTERM goes
    to fastdns itself (a shell would die of it first and hide fastdns's exit
    code); anything left after a minute is killed."""
    if proc.poll() is None:
        if sig == signal.SIGTERM:
            os.kill(server_pid(proc), sig)
        else:
            os.killpg(proc.pid, sig)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh virtualenv, nothing of fastdns in it; its environment for subprocesses."""
    d = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(d)
    env["PATH"] = f"{d / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def served(venv: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """The README's run command, verbatim, in a fresh clone's root; the demo answering."""
    clone = fresh_clone(tmp_path_factory.mktemp("src"))
    before = {p.name for p in Path("/dev/shm").iterdir()}
    proc = subprocess.Popen(["bash", "-c", readme_command("run-command")], cwd=clone, env=venv,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        got = wait_for_answer("nginx-svc.default.svc.cluster.local", "10.96.0.50", proc)
    except BaseException:
        stop_group(proc, signal.SIGKILL)
        raise
    yield {"clone": clone, "proc": proc, "answer": got, "shm_before": before, "env": venv}
    stop_group(proc, signal.SIGKILL)


def test_readme_run_command_from_the_clone_root_answers_dig(served: dict) -> None:
    proc = served["proc"]
    if served["answer"] != "10.96.0.50":
        out = stop_group(proc)
        pytest.fail(f"the demo did not answer (dig said {served['answer']!r}); output:\n{out[-4000:]}")
    assert dig("web-0.web.default.svc.cluster.local", DEMO_PORT, "+tcp") == "10.244.1.20"
    out = stop_group(proc)                   # SIGTERM: lameduck, then a clean stop
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out and "ModuleNotFoundError" not in out, out[-4000:]
    assert "restarting" not in out, out[-4000:]
    left = {p.name for p in Path("/dev/shm").iterdir()} - served["shm_before"]
    assert not [n for n in left if n.startswith("fastdns-")], left


def test_embedded_server_from_the_clone_root(served: dict, tmp_path: Path) -> None:
    """`fastdns.Server(workers=2)` in a program started where a source tree lies."""
    stop_group(served["proc"])               # the demo's port is the README's
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent("""
        import sys
        import fastdns
        with fastdns.Server(workers=2, port=0) as srv:
            print("PORT", srv.listeners[0][1], len(srv.worker_pids), flush=True)
            sys.stdin.readline()
    """))
    proc = subprocess.Popen(["python", str(script)], cwd=served["clone"], env=served["env"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line + proc.stdout.read()
        _, port, nworkers = line.split()
        assert nworkers == "2"
        assert dig("nginx-svc.default.svc.cluster.local", int(port)) == "10.96.0.50"
        assert dig("nginx-svc.default.svc.cluster.local", int(port), "+tcp") == "10.96.0.50"
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_source_tree_on_pythonpath_is_named_not_a_traceback(served: dict, tmp_path: Path) -> None:
    """PYTHONPATH at an unbuilt source tree: the coordinator itself imports it, and says so."""
    env = dict(served["env"], PYTHONPATH=str(served["clone"]))
    for argv in (["fastdns", "serve"], ["python", "-m", "fastdns", "serve"]):
        r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert "no compiled extension" in r.stderr and str(served["clone"]) in r.stderr, r.stderr
