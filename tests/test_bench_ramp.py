"""``fastdns-bench ramp``: open-loop steps until loss or p99 crosses its
threshold, against a loopback responder that saturates at a known rate (it
drops, or delays, what exceeds it).  Behaviour, not speed: the ramp stops at
the first step past the responder's rate, whatever this machine's QPS."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fastdns.bench.ramp import RampSpec
from fastdns.bench.testserver import ScriptedServer
from fastdns.cli.bench import main
from fastdns.errors import BenchError


@pytest.fixture
def qfile(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\nmail.example.com A\n")
    return q


def ramp(srv: ScriptedServer, q, tmp_path, *extra: str) -> dict:
    out = tmp_path / "ramp.json"
    rc = main(["ramp", "-s", f"127.0.0.1:{srv.port}", "--queries", str(q), "--no-probe", "-q",
               "--json", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text())


def test_rates():
    assert RampSpec(200, 3200, factor=2).rates() == [200, 400, 800, 1600, 3200]
    assert RampSpec(200, 1000, factor=2).rates() == [200, 400, 800, 1000]
    assert RampSpec(100, 300, step=100).rates() == [100, 200, 300]
    assert RampSpec(100, 100, step=5).rates() == [100]
    for bad in (RampSpec(100, 50, step=1), RampSpec(100, 200), RampSpec(100, 200, step=1, factor=2),
                RampSpec(100, 200, factor=1.0), RampSpec(100, 200, step=1, max_loss_pct=101),
                RampSpec(1, 1e9, step=1)):
        with pytest.raises(BenchError):
            bad.validate()


def test_stops_when_loss_crosses(qfile, tmp_path):
    # saturates at 500/s (bursts of 0.2 s): 200 and 400 hold, 800 loses about a fifth
    with ScriptedServer(max_rate=500, burst=0.2) as srv:
        d = ramp(srv, qfile, tmp_path, "--start", "200", "--factor", "2", "--max", "3200",
                 "--step-duration", "0.8", "--max-loss", "5", "-t", "0.2")
        counts = srv.counts()
    steps = d["steps"]
    assert [s["rate"] for s in steps] == [200, 400, 800]
    assert [s["held"] for s in steps] == [True, True, False]
    assert steps[-1]["crossed"] == ["loss"] and steps[-1]["loss_pct"] > 5
    assert d["stopped_by"] == "loss" and d["last_held_rate"] == 400
    assert d["last_held_qps"] == steps[1]["qps"]
    # exact counting: the steps' counts are the responder's
    assert sum(s["sent"] for s in steps) == counts["received"]
    assert sum(s["lost"] for s in steps) == counts["dropped"] == counts["over_rate"] > 0
    assert sum(s["answered"] for s in steps) == counts["answered"]
    for s in steps:
        assert s["sent"] == s["answered"] + s["lost"]
        assert s["result"]["rate"] == s["rate"] and s["result"]["mode"] == "open"
        assert s["loss_pct"] == pytest.approx(100 * s["lost"] / s["sent"], abs=1e-4)


def test_stops_when_p99_crosses(qfile, tmp_path):
    # past 500/s the responder answers 300 ms late instead of dropping
    with ScriptedServer(max_rate=500, burst=0.2, over_rate="delay", delay=0.3) as srv:
        d = ramp(srv, qfile, tmp_path, "--start", "200", "--factor", "2", "--max", "3200",
                 "--step-duration", "0.8", "--max-loss", "50", "--max-p99", "150", "-t", "1")
    steps = d["steps"]
    assert [s["rate"] for s in steps] == [200, 400, 800]
    assert [s["held"] for s in steps] == [True, True, False]
    assert steps[-1]["crossed"] == ["p99"] and steps[-1]["p99_ms"] >= 150
    assert all(s["lost"] == 0 for s in steps)
    assert d["stopped_by"] == "p99" and d["last_held_rate"] == 400


def test_every_step_holds_up_to_max_and_plot(qfile, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib.image
    png = tmp_path / "ramp.png"
    with ScriptedServer() as srv:
        d = ramp(srv, qfile, tmp_path, "--start", "100", "--step", "100", "--max", "300",
                 "--step-duration", "0.3", "--plot", str(png))
    assert [s["rate"] for s in d["steps"]] == [100, 200, 300] and all(s["held"] for s in d["steps"])
    assert d["stopped_by"] == "max" and d["last_held_rate"] == 300
    out = capsys.readouterr().out
    assert "every step held up to --max" in out and f"wrote {png}" in out
    img = matplotlib.image.imread(str(png))
    rgb = {tuple(round(float(v) * 255) for v in px[:3]) for px in img.reshape(-1, img.shape[2])[::5]}
    assert (31, 119, 180) in rgb and (255, 127, 14) in rgb     # answered (C0) and p99 (C1)


def test_no_rate_held(qfile, tmp_path, capsys):
    with ScriptedServer(drop_every=2) as srv:
        d = ramp(srv, qfile, tmp_path, "--start", "100", "--factor", "2", "--max", "800",
                 "--step-duration", "0.3", "-t", "0.2")
    assert len(d["steps"]) == 1 and d["last_held_rate"] is None and d["stopped_by"] == "loss"
    assert "no rate held" in capsys.readouterr().out


def test_bad_options_and_missing_matplotlib(qfile, tmp_path):
    def run(*args: str, pre: str = "") -> subprocess.CompletedProcess:
        code = f"import sys; {pre}from fastdns.cli.bench import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, "ramp", "-s", "127.0.0.1:9", "--queries", str(qfile),
                               *args], check=False, capture_output=True, text=True, timeout=60)

    for args, frag in ((["--start", "10", "--factor", "1", "--max", "100"], "--factor"),
                       (["--start", "10", "--step", "5", "--max", "5"], "--max"),
                       (["--start", "10", "--step", "5", "--max", "50", "--max-loss", "-1"], "--max-loss"),
                       (["--start", "10", "--step", "5", "--max", "50", "--plot", "x.jpg"], ".png or .svg")):
        r = run(*args)
        assert r.returncode == 1 and frag in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("--start", "10", "--step", "5", "--max", "50", "--plot", str(tmp_path / "x.png"),
            pre="sys.modules['matplotlib'] = None; ")
    assert r.returncode == 1 and "needs matplotlib" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert run("--start", "10", "--step", "5", "--factor", "2", "--max", "50").returncode == 2  # argparse
