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


PILLAR_FLAGS = ["--localip", "169.254.20.10,10.96.0.10", "--dns-server", "10.96.0.10",
                "--cluster-dns", "10.96.0.11", "--upstream-servers", "127.0.0.1,127.0.0.2",
                "--dns-domain", "k8s.test"]


def test_check_config_takes_serves_placeholder_flags() -> None:
    """The NodeLocalDNS addon's ConfigMap, as shipped, checked with node-cache's flags."""
    template = DATA / "002-nodelocaldns.corefile.in"
    out = _run("check-config", str(template), *PILLAR_FLAGS)
    assert out.returncode == 0, out.stderr
    assert "zones: k8s.test." in out.stdout
    assert "addresses=169.254.20.10 10.96.0.10" in out.stdout
    assert "dns://10.96.0.11:53" in out.stdout and "force_tcp=True" in out.stdout
    assert "dns://127.0.0.1:53" in out.stdout and "dns://127.0.0.2:53" in out.stdout
    assert "169.254.20.10:8080" in out.stdout


@pytest.mark.parametrize("drop,needs", [("--localip", "--localip"),
                                        ("--cluster-dns", "--cluster-dns")])
def test_check_config_names_a_missing_placeholder_flag(drop: str, needs: str) -> None:
    i = PILLAR_FLAGS.index(drop)
    flags = PILLAR_FLAGS[:i] + PILLAR_FLAGS[i + 2:]
    template = DATA / "002-nodelocaldns.corefile.in"
    out = subprocess.run([sys.executable, "-m", "fastdns", "check-config", str(template), *flags],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in __import__("os").environ.items()
                              if k != "KUBE_DNS_UPSTREAM_SERVICE_HOST"})
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"{template}: ") and needs in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_plugin_not_served_yet_is_refused_by_check_config_and_serve(tmp_path: Path) -> None:
    """Parsed and then ignored would silently change answers: both commands refuse it."""
    from fastdns.config.registry import SUPPORTED
    from fastdns.plugins.runtime import served

    # a plugin that takes no arguments and is not served (yet)
    name = next((n for n in ("debug", "any", "minimal", "local", "whoami")
                 if n in SUPPORTED and not served(n)), None)
    if name is None:
        pytest.skip("every argument-less plugin is served (see the in-process test below)")
    core = tmp_path / "Corefile"
    core.write_text(f". {{\n    bind 127.0.0.1\n    {name}\n}}\n")
    check = _run("check-config", str(core))
    assert check.returncode == 1 and "[NOT SERVED" in check.stdout
    assert check.stderr.startswith(f"{core}:3:5: plugin '{name}' is recognised but not served")
    serve = subprocess.run([sys.executable, "-m", "fastdns", "serve", "--conf", str(core),
                            "--port", "0"], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 1, serve.stderr
    assert serve.stderr.strip().splitlines()[-1] == f"fastdns: {check.stderr.strip()}"
    assert "Traceback" not in serve.stderr


def test_check_config_refuses_more_listeners_than_the_engine_holds(tmp_path: Path) -> None:
    core = tmp_path / "Corefile"
    core.write_text("".join(f"example.test {{\n    bind 127.0.0.{i}\n    errors\n}}\n"
                            for i in range(1, 20)))
    out = _run("check-config", str(core))
    assert out.returncode == 1
    assert out.stderr.startswith(f"{core}: too many listeners"), out.stderr
    assert "limit of fastdns's engine" in out.stderr and "Traceback" not in out.stderr


def test_import_of_something_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """`import /dev/zero` read forever (7.6 GB, then MemoryError); now: one clear line."""
    core = tmp_path / "Corefile"
    core.write_text(". {\n    import /dev/zero\n    errors\n}\n")
    out = _run("check-config", str(core))
    assert out.returncode == 1
    assert out.stderr.strip() == f"{core}:2:5: cannot read /dev/zero: not a regular file"


def test_a_config_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    from fastdns.limits import CONFIG_FILE_MAX

    big = tmp_path / "big.conf"
    big.write_text("# padding\n" * (CONFIG_FILE_MAX // 10 + 1))
    core = tmp_path / "Corefile"
    core.write_text(f". {{\n    import {big}\n    errors\n}}\n")
    out = _run("check-config", str(core))
    assert out.returncode == 1
    assert f"cannot read {big}: larger than the {CONFIG_FILE_MAX} bytes" in out.stderr
    out = _run("check-config", str(big))
    assert out.returncode == 1 and "larger than the" in out.stderr


def test_environment_substitution_is_not_recursive(tmp_path: Path) -> None:
    """A value holding a reference is inserted as it is (it used to grow forever)."""
    core = tmp_path / "Corefile"
    core.write_text("{$EVIL}.example:1053 {\n    errors\n}\n")
    env = dict(__import__("os").environ, EVIL="{$EVIL}x")
    out = subprocess.run([sys.executable, "-m", "fastdns", "check-config", str(core)],
                         capture_output=True, text=True, timeout=60, env=env)
    # the zone is the value's literal text, substituted once (it ran forever before)
    assert out.returncode == 0, out.stderr
    assert "zones: {\\$evil}x.example.\n" in out.stdout, out.stdout


def test_unserved_plugin_refusal_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal works whatever is served today: whoami declared unserved here."""
    import fastdns.plugins.whoami as whoami
    from fastdns.cli.main import main
    from fastdns.plugins import runtime

    monkeypatch.setattr(whoami, "PLUGIN", runtime.Plugin(served=False))
    runtime.plugin.cache_clear()
    try:
        core = tmp_path / "Corefile"
        core.write_text(". {\n    bind 127.0.0.1\n    whoami\n}\n")
        assert main(["check-config", str(core)]) == 1
        out = capsys.readouterr()
        assert "[NOT SERVED" in out.out
        assert out.err.startswith(f"{core}:3:5: plugin 'whoami' is recognised but not served")
    finally:
        monkeypatch.undo()
        runtime.plugin.cache_clear()
