"""`fastdns check-config` as a user runs it (a subprocess), and main() in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastdns.cli.main import main

DATA = Path(__file__).parent / "data" / "corefiles"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastdns", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_check_config_ok_explains_the_plan(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    core = tmp_path / "Corefile"
    core.write_text((DATA / "001-kubeadm.corefile").read_text()
                    .replace("/etc/resolv.conf", str(resolv)))
    out = _run("check-config", str(core))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert "dns://*:53" in out.stdout and "zones: ." in out.stdout
    chain = {ln.split()[0]: ln for ln in out.stdout.splitlines() if "[" in ln and "]" in ln}
    for name in ("kubernetes", "forward", "cache", "health", "ready", "prometheus", "loop",
                 "reload", "loadbalance", "errors"):       # every plugin kubeadm uses is served
        assert "[implemented]" in chain[name], chain[name]
    lines = [ln.split()[0] for ln in out.stdout.splitlines() if "[" in ln and "]" in ln]
    assert lines.index("cache") < lines.index("kubernetes") < lines.index("forward")


@pytest.mark.parametrize("case,where", [
    ("101-unknown-plugin.corefile", "4:5"),
    ("104-unclosed-brace.corefile", "2:6"),
    ("106-missing-import.corefile", "3:5"),
])
def test_check_config_error_names_file_line_column(case: str, where: str) -> None:
    out = _run("check-config", str(DATA / case))
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith(f"{DATA / case}:{where}: "), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1


def test_check_config_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check-config", str(tmp_path / "nope")]) == 1
    assert "cannot read" in capsys.readouterr().err
