"""fastdns-bench's command line: bad input gives one clear line, exit 1; cluster files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import yaml

from fastdns.bench.cluster import ClusterSpec, generate_cluster
from fastdns.bench.scenario import read_cluster
from fastdns.bench.testserver import ScriptedServer
from fastdns.cli.bench import main


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastdns.cli.bench", *args],
                          check=False, capture_output=True, text=True, timeout=60)


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def assert_clean_error(r: subprocess.CompletedProcess, *fragments: str) -> None:
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert line.startswith("fastdns-bench: ") and "\n" not in line, line
    for f in fragments:
        assert f in line, line


def test_malformed_query_line_names_file_and_line(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("# comment\nwww.example.com A\n\nbad line with words\n")
    assert_clean_error(cli("run", "-s", "127.0.0.1:53", "--queries", str(q)), f"{q}:4:", "name type")
    q.write_text("www.example.com NOTATYPE\n")
    assert_clean_error(cli("run", "-s", "127.0.0.1:53", "--queries", str(q)), f"{q}:1:", "NOTATYPE")
    assert_clean_error(cli("run", "-s", "127.0.0.1:53", "--queries", str(tmp_path / "nope")), "cannot read")


def test_unreachable_server_is_a_clear_error(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    port = free_udp_port()
    assert_clean_error(cli("run", "-s", f"127.0.0.1:{port}", "--queries", str(q), "-l", "1"),
                       "connection refused", str(port))


def test_silent_server_is_a_clear_error(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    with ScriptedServer(drop_every=1) as srv:
        r = cli("run", "-s", f"127.0.0.1:{srv.port}", "--queries", str(q), "-t", "0.2")
    assert_clean_error(r, "no answer to 3 probe queries")


def test_bad_server_and_options(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    assert_clean_error(cli("run", "-s", "localhost:53", "--queries", str(q)), "numeric IP")
    assert_clean_error(cli("run", "-s", "127.0.0.1:99999", "--queries", str(q)), "port")
    assert_clean_error(cli("run", "-s", "127.0.0.1", "--queries", str(q), "-l", "0"), "--duration")
    assert_clean_error(cli("compare", "--target", "nolabel", "--queries", str(q)), "LABEL=HOST:PORT")


@pytest.mark.parametrize("content,fragment", [
    ("items: [\n  {kind: Service,\n", "not valid YAML"),
    ("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n",
     "no Services"),
    ("apiVersion: v1\nkind: List\nitems: 5\n", "without an items list"),
    ("apiVersion: v1\nkind: List\nitems:\n- kind: Service\n  metadata: {namespace: a}\n", "metadata.name"),
    ("- 1\n- 2\n", "expected Kubernetes objects"),
])
def test_bad_cluster_file(tmp_path, content, fragment):
    f = tmp_path / "cluster.yaml"
    f.write_text(content)
    assert_clean_error(cli("run", "-s", "127.0.0.1:53", "--scenario", "k8s-pod", "--cluster", str(f)),
                       str(f), fragment)


def test_scenario_needs_cluster_and_known_name(tmp_path):
    assert_clean_error(cli("run", "-s", "127.0.0.1", "--scenario", "k8s-pod"), "--cluster")
    assert_clean_error(cli("run", "-s", "127.0.0.1", "--scenario", "nope", "--cluster", "x"), "unknown scenario")


def test_cluster_generator_writes_a_kubectl_list(tmp_path):
    out, qf = tmp_path / "c.yaml", tmp_path / "q.txt"
    assert main(["cluster", "--services", "120", "--endpoints-per-service", "150",
                 "--headless-fraction", "0.25", "--namespaces", "3", "-o", str(out), "--queries", str(qf)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    kinds: dict[str, list] = {}
    for it in doc["items"]:
        kinds.setdefault(it["kind"], []).append(it)
    assert len(kinds["Namespace"]) == 3 and len(kinds["Service"]) == 120
    svcs = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in kinds["Service"]}
    headless = [s for s in svcs.values() if s["spec"].get("clusterIP") == "None"]
    external = [s for s in svcs.values() if s["spec"]["type"] == "ExternalName"]
    assert 25 <= len(headless) <= 31 and 1 <= len(external) <= 3
    for s in svcs.values():
        if s["spec"]["type"] == "ClusterIP" and s["spec"]["clusterIP"] != "None":
            assert s["spec"]["clusterIPs"] == [s["spec"]["clusterIP"]]
            assert s["spec"]["ports"][0]["name"] == "http"
    per_svc: dict[tuple, int] = {}
    for sl in kinds["EndpointSlice"]:
        assert sl["apiVersion"] == "discovery.k8s.io/v1" and sl["addressType"] == "IPv4"
        assert len(sl.get("endpoints", [])) <= 100
        key = (sl["metadata"]["namespace"], sl["metadata"]["labels"]["kubernetes.io/service-name"])
        assert key in svcs
        for ep in sl.get("endpoints", []):
            assert ep["conditions"]["ready"] is True and ep["targetRef"]["kind"] == "Pod"
            socket.inet_aton(ep["addresses"][0])
        per_svc[key] = per_svc.get(key, 0) + len(sl.get("endpoints", []))
    assert all(n == 150 for n in per_svc.values()) and len(per_svc) == 120 - len(external)
    assert any("hostname" in ep for sl in kinds["EndpointSlice"] for ep in sl.get("endpoints", []))
    queries = [line.split() for line in qf.read_text().splitlines()]
    assert {t for _, t in queries} == {"A", "AAAA", "SRV"}
    assert all(n.endswith(".svc.cluster.local") for n, _ in queries)
    c = read_cluster(out)
    assert len(c.services) == 120 and c.namespaces == ["ns-0", "ns-1", "ns-2"]
    assert sum(1 for s in c.services if s.hostnames) > 0


def test_cluster_json_roundtrip(tmp_path):
    obj, _ = generate_cluster(ClusterSpec(10, 2))
    out = tmp_path / "c.json"
    assert main(["cluster", "--services", "10", "--endpoints-per-service", "2", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == obj
    assert len(read_cluster(out).services) == 10


def test_run_json_output_and_scenario(tmp_path):
    cl = tmp_path / "c.yaml"
    assert main(["cluster", "--services", "20", "--endpoints-per-service", "2", "-o", str(cl)]) == 0
    js = tmp_path / "r.json"
    with ScriptedServer() as srv:
        rc = main(["run", "-s", f"127.0.0.1:{srv.port}", "--scenario", "k8s-pod", "--cluster", str(cl),
                   "-l", "0.5", "-c", "4", "-q", "--json", str(js), "--lookups", "50"])
    assert rc == 0
    d = json.loads(js.read_text())
    for k in ("sent", "answered", "lost", "late", "qps", "rcodes", "latency_us", "per_second", "lookups"):
        assert k in d
    assert set(d["latency_us"]) >= {"p50", "p90", "p99", "p999", "max"}
    # every name exists as A at the first candidate tried: one A+AAAA pair per lookup
    assert d["lookups"]["ok"] > 0 and d["lookups"]["queries_per_lookup"] == 2.0
    assert d["sent"] == d["answered"] + d["lost"]


def test_compare_table(tmp_path, capsys):
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    with ScriptedServer() as a, ScriptedServer() as b:
        rc = main(["compare", "--target", f"one=127.0.0.1:{a.port}", "--target", f"two=127.0.0.1:{b.port}",
                   "--queries", str(q), "-l", "0.3", "-c", "2", "--rounds", "2", "-q",
                   "--json", str(tmp_path / "c.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "one" in out and "two" in out and "×QPS" in out
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert rows[0]["qps_ratio"] == 1.0 and rows[1]["rounds"] == 2


def test_json_dash_is_the_only_thing_on_stdout(tmp_path):
    """``run ... --json - | python -c 'json.load(sys.stdin)'`` works: the text goes to stderr."""
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    with ScriptedServer() as srv:
        cmd = (f"{sys.executable} -m fastdns.cli.bench run -s 127.0.0.1:{srv.port} --queries {q} "
               f"-l 1.2 -c 4 --json - | {sys.executable} -c "
               "'import json,sys; d=json.load(sys.stdin); print(d[\"answered\"], d[\"sent\"])'")
        r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    answered, sent = map(int, r.stdout.split())
    assert answered == sent > 0
    # the summary and the per-second lines are on stderr
    assert "QPS" in r.stderr and "latency" in r.stderr and "   1s  sent" in r.stderr
    with ScriptedServer() as a, ScriptedServer() as b:
        r = cli("compare", "--target", f"a=127.0.0.1:{a.port}", "--target", f"b=127.0.0.1:{b.port}",
                "--queries", str(q), "-l", "0.3", "-c", "2", "--rounds", "1", "--json", "-")
    assert r.returncode == 0, r.stderr
    assert [row["label"] for row in json.loads(r.stdout)["rows"]] == ["a", "b"]
    assert "×QPS" in r.stderr


def test_compare_plot(tmp_path):
    """A latency CDF and QPS bars for two loopback servers, PNG and SVG."""
    pytest.importorskip("matplotlib")
    import matplotlib.image
    q = tmp_path / "q.txt"
    q.write_text("www.example.com A\n")
    png, svg = tmp_path / "out.png", tmp_path / "out.svg"
    with ScriptedServer() as a, ScriptedServer(delay_every=2, delay=0.002) as b:
        for out in (png, svg):
            assert main(["compare", "--target", f"fast=127.0.0.1:{a.port}", "--target",
                         f"slow=127.0.0.1:{b.port}", "--queries", str(q), "-l", "0.3", "-c", "2",
                         "--rounds", "2", "-q", "--plot", str(out)]) == 0
    img = matplotlib.image.imread(str(png))
    assert img.shape[0] > 300 and img.shape[1] > 800
    rgb = {tuple(round(float(v) * 255) for v in px[:3]) for px in img.reshape(-1, img.shape[2])[::7]}
    # both targets are drawn in their own colours (matplotlib's first two: C0 blue, C1 orange)
    assert (31, 119, 180) in rgb and (255, 127, 14) in rgb
    text = svg.read_text()
    for label in ("fast", "slow", "latency CDF", "throughput", "UDP, concurrency 2"):
        assert label in text
    assert main(["compare", "--target", f"x=127.0.0.1:{free_udp_port()}", "--queries", str(q),
                 "--plot", str(tmp_path / "out.jpg")]) == 1
