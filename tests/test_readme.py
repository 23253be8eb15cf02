"""The README is true: two set-up commands, CI runs its test command, examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def command_after(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```", README)
    assert m, f"README has no {marker}"
    return m.group(1)


def test_exactly_two_setup_commands() -> None:
    assert README.count("<!-- run-command -->") == 1 and README.count("<!-- test-command -->") == 1
    assert "fastdns serve" in command_after("run-command")
    assert "pytest" in command_after("test-command")


@pytest.mark.parametrize("marker", ["test-command", "run-command"])
def test_ci_runs_the_readme_commands(marker: str) -> None:
    """.ci/run extracts both commands with its own function, and runs what it extracts."""
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^readme_command\(\) \{.*?^\}\n", ci, re.S | re.M)
    assert m, ".ci/run has no readme_command function"
    assert f"readme_command {marker})" in ci
    out = subprocess.run(["bash", "-c", m.group(0) + f"readme_command {marker}"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert out == command_after(marker)


EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
