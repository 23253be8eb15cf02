"""``fastdns-bench merge``, the split load (``--index/--of/--start-at``) and
the Indexed Job's pods played by local processes: exact counts, pooled
percentiles, seconds aligned by wall clock, clear errors on bad files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fastdns.bench.merge import merge_results, read_result
from fastdns.bench.stats import Histogram
from fastdns.bench.testserver import ScriptedServer
from fastdns.cli.bench import main

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "deploy" / "bench-job.yaml"
CLI = [sys.executable, "-m", "fastdns.cli.bench"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=60)


def job_container() -> tuple[dict, dict, str]:
    docs = list(yaml.safe_load_all(JOB.read_text()))
    job = next(d for d in docs if d["kind"] == "Job")
    queries = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["queries.txt"]
    return job, job["spec"]["template"]["spec"]["containers"][0], queries


def pooled(parts: list[dict], key: str = "latency_hist") -> dict:
    h = Histogram()
    for d in parts:
        h.merge(Histogram.from_floor_pairs(d[key]["buckets"]))
    return h.summary(max(d[key]["max_ns"] for d in parts), sum(d[key]["sum_ns"] for d in parts))


@pytest.fixture(scope="module")
def pods(tmp_path_factory) -> dict:
    """The Job's pods as 4 local processes (the manifest's own args, ~1 s each,
    one agreed start) against one loopback responder; their logs and counts."""
    tmp = tmp_path_factory.mktemp("pods")
    job, c, queries = job_container()
    n = job["spec"]["completions"]
    mount = c["volumeMounts"][0]["mountPath"]
    (tmp / "queries.txt").write_text(queries)
    # a generous lead: the processes must all be up before the instant (on a loaded CI
    # machine starting Python takes seconds), else they start late and the test is moot
    start_at = time.time() + 6.0
    with ScriptedServer() as srv:
        procs = []
        for i in range(n):
            args = [a.replace("$(KUBE_DNS_SERVICE_HOST)", "127.0.0.1").replace(":53", f":{srv.port}")
                    .replace(mount, str(tmp)).replace("$(JOB_COMPLETION_INDEX)", str(i))
                    .replace("__START_AT__", f"{start_at:.6f}") for a in c["args"]]
            args[args.index("--duration") + 1] = "1"
            # fewer in flight than the cluster's 400: this responder is Python
            args[args.index("--concurrency") + 1] = "16"
            log = (tmp / f"pod-{i}.log").open("w")
            procs.append((subprocess.Popen([*CLI, *args, "--no-probe"], stdout=log, stderr=subprocess.STDOUT,
                                           cwd=ROOT), log))
        for p, log in procs:
            assert p.wait(timeout=60) == 0, (tmp / f"pod-{procs.index((p, log))}.log").read_text()
            log.close()
        ended = time.time()
        counts = srv.counts()
    logs = [tmp / f"pod-{i}.log" for i in range(n)]
    return {"n": n, "logs": logs, "parts": [read_result(p) for p in logs], "server": counts,
            "start_at": start_at, "ended": ended, "tmp": tmp}


def test_merged_counts_are_the_sum_of_the_pods(pods):
    parts = pods["parts"]
    assert len(parts) == pods["n"] == 4
    r = cli("merge", *map(str, pods["logs"]))
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    for k in ("sent", "answered", "lost", "late", "unexpected", "send_errors"):
        assert m[k] == sum(d[k] for d in parts), k
    # ... and the responder's own count (no probe: every query it saw was sent by a pod)
    assert m["sent"] == pods["server"]["received"] and m["answered"] == pods["server"]["answered"] > 0
    rcodes: dict[str, int] = {}
    for d in parts:
        for k, v in d["rcodes"].items():
            rcodes[k] = rcodes.get(k, 0) + v
    assert m["rcodes"] == rcodes and sum(rcodes.values()) == m["answered"]
    # shares add up to the total the Job asked for
    assert [d["concurrency"] for d in parts] == [4, 4, 4, 4] and m["concurrency"] == 16
    assert [d["share"]["index"] for d in parts] == [0, 1, 2, 3]
    assert m["shares"]["complete"] is True
    # per-second series: the pods started together, so their rows add up row by row
    width = max(len(d["per_second"]) for d in parts)
    for i in range(width):
        for k in ("sent", "answered", "lost", "late"):
            want = sum(d["per_second"][i][k] for d in parts if i < len(d["per_second"]))
            assert m["per_second"][i][k] == want
    assert sum(row["sent"] for row in m["per_second"]) == m["sent"]
    assert m["merged"]["results"] == 4 and m["procs"] == 4


def test_merged_percentiles_are_those_of_the_pooled_histograms(pods):
    parts = pods["parts"]
    m = merge_results([(str(p), d) for p, d in zip(pods["logs"], parts)])
    assert m["latency_us"] == pooled(parts)
    assert Histogram.from_floor_pairs(m["latency_hist"]["buckets"]).count == m["answered"]
    # the QPS comes from the merged counts over the union of the spans
    span = max(d["start_unix"] + d["duration_s"] for d in parts) - min(d["start_unix"] for d in parts)
    assert m["duration_s"] == pytest.approx(span, abs=1e-5)
    assert m["qps"] == round(m["answered"] / m["duration_s"], 1)


def test_start_at_is_honoured(pods):
    for d in pods["parts"]:
        # second 1 of every pod begins at the agreed instant ...
        assert d["start_unix"] == pytest.approx(pods["start_at"], abs=0.05)
    # ... and they sent for their second after it, not before
    assert pods["ended"] >= pods["start_at"] + 1.0


def test_merge_with_itself_doubles_the_counts(pods, tmp_path):
    one = pods["logs"][0]
    a = json.loads(cli("merge", str(one)).stdout)
    r = cli("merge", str(one), str(one), "--json", str(tmp_path / "twice.json"))
    assert r.returncode == 0, r.stderr
    b = json.loads((tmp_path / "twice.json").read_text())
    for k in ("sent", "answered", "lost", "late"):
        assert b[k] == 2 * a[k]
    assert b["rcodes"] == {k: 2 * v for k, v in a["rcodes"].items()}
    assert [row["sent"] for row in b["per_second"]] == [2 * row["sent"] for row in a["per_second"]]
    assert b["qps"] == pytest.approx(2 * a["qps"], abs=0.2) and b["duration_s"] == a["duration_s"]
    # same samples twice: the same distribution
    assert {k: b["latency_us"][k] for k in ("p50", "p90", "p99", "p999", "max", "mean")} == \
        {k: a["latency_us"][k] for k in ("p50", "p90", "p99", "p999", "max", "mean")}
    # a merged result merges again
    c = json.loads(cli("merge", str(tmp_path / "twice.json"), str(one)).stdout)
    assert c["sent"] == 3 * a["sent"] and c["merged"]["results"] == 3


def test_seconds_are_aligned_by_wall_clock(pods):
    d = pods["parts"][0]
    later = copy.deepcopy(d)
    later["start_unix"] = d["start_unix"] + 2.0
    m = merge_results([("a", d), ("b", later)])
    rows = [r["sent"] for r in m["per_second"]]
    own = [r["sent"] for r in d["per_second"]]
    assert len(rows) == len(own) + 2
    for i, v in enumerate(rows):
        assert v == (own[i] if i < len(own) else 0) + (own[i - 2] if 0 <= i - 2 < len(own) else 0)
    assert m["duration_s"] == pytest.approx(d["duration_s"] + 2.0)


def test_compare_and_plot_accept_merged_results(pods, tmp_path):
    pytest.importorskip("matplotlib")
    merged = tmp_path / "merged.json"
    assert cli("merge", *map(str, pods["logs"]), "--json", str(merged)).returncode == 0
    out, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    r = cli("compare", "--result", f"cluster={merged}", "--result", f"pod0={pods['logs'][0]}",
            "--plot", str(png), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "cluster" in r.stdout and "pod0" in r.stdout and "×QPS" in r.stdout
    rows = json.loads(out.read_text())["rows"]
    m = json.loads(merged.read_text())
    assert rows[0]["label"] == "cluster" and rows[0]["qps"] == m["qps"] and rows[0]["qps_ratio"] == 1.0
    assert rows[1]["qps"] == pods["parts"][0]["qps"]
    import matplotlib.image
    img = matplotlib.image.imread(str(png))
    rgb = {tuple(round(float(v) * 255) for v in px[:3]) for px in img.reshape(-1, img.shape[2])[::7]}
    assert (31, 119, 180) in rgb and (255, 127, 14) in rgb   # both CDFs drawn


def test_open_loop_shares_add_up(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    start_at = time.time() + 5.0           # generous: every process is up before it
    with ScriptedServer() as srv:
        procs = [subprocess.Popen([*CLI, "run", "-s", f"127.0.0.1:{srv.port}", "--queries", str(q), "-l", "0.5",
                                   "--rate", "600", "--index", str(i), "--of", "3", "--start-at", f"{start_at}",
                                   "-q", "--no-probe", "--json", str(tmp_path / f"r{i}.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(3)]
        for p in procs:
            assert p.wait(timeout=60) == 0, p.stderr.read()
        received = srv.counts()["received"]
    parts = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(3)]
    assert [d["rate"] for d in parts] == [200.0] * 3 and all(d["share"]["rate"] == 600 for d in parts)
    m = json.loads(cli("merge", *(str(tmp_path / f"r{i}.json") for i in range(3))).stdout)
    assert m["rate"] == 600.0 and m["mode"] == "open"
    # open loop: each share sends its scheduled queries, 200/s × 0.5 s (+1 at t0)
    assert all(abs(d["sent"] - 100) <= 2 for d in parts)
    assert m["sent"] == sum(d["sent"] for d in parts) == received
    assert all(d["start_unix"] == pytest.approx(start_at, abs=0.05) for d in parts)


def test_late_start_is_an_error(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    with ScriptedServer() as srv:
        r = cli("run", "-s", f"127.0.0.1:{srv.port}", "--queries", str(q), "-l", "0.2",
                "--start-at", f"{time.time() - 30:.3f}")
    assert r.returncode == 1 and "in the past" in r.stderr and "Traceback" not in r.stderr
    assert main(["run", "-s", "127.0.0.1:9", "--queries", str(q), "--index", "4", "--of", "4"]) == 1


def _assert_file_error(r: subprocess.CompletedProcess, path: Path, *fragments: str) -> None:
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert line.startswith("fastdns-bench: ") and "\n" not in line, line
    assert str(path) in line, line
    for f in fragments:
        assert f in line, line


def test_bad_input_names_the_file(pods, tmp_path):
    good = str(pods["logs"][0])
    text = tmp_path / "text.json"
    text.write_text("server 1.2.3.4  closed loop\nnot json at all\n")
    _assert_file_error(cli("merge", good, str(text)), text, "not JSON")
    schema = tmp_path / "schema.json"
    schema.write_text('{"version": 1, "sent": "many"}')
    _assert_file_error(cli("merge", good, str(schema)), schema, "not a fastdns-bench result", "'sent'")
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    _assert_file_error(cli("merge", str(listing)), listing, "JSON object")
    missing = tmp_path / "nope.json"
    _assert_file_error(cli("merge", good, str(missing)), missing, "no such file")
    # a result of an older fastdns-bench (no histogram): readable, but not mergeable
    old = json.loads(json.dumps(pods["parts"][0]))
    del old["latency_hist"], old["start_unix"]
    oldf = tmp_path / "old.json"
    oldf.write_text(json.dumps(old))
    _assert_file_error(cli("merge", good, str(oldf)), oldf, "older fastdns-bench")
    # ... compare still reads it
    r = cli("compare", "--result", f"old={oldf}")
    assert r.returncode == 0 and "old" in r.stdout, r.stderr
    _assert_file_error(cli("compare", "--result", f"x={missing}"), missing, "no such file")
    # mixing closed- and open-loop results is refused, naming both files
    open_ = json.loads(json.dumps(pods["parts"][0]))
    open_["mode"] = "open"
    openf = tmp_path / "open.json"
    openf.write_text(json.dumps(open_))
    r = cli("merge", good, str(openf))
    assert r.returncode == 2 and "'mode'" in r.stderr and str(openf) in r.stderr and "Traceback" not in r.stderr
