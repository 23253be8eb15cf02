"""reload: a ConfigMap-style symlink flip under steady load loses no query; a broken
Corefile changes nothing but coredns_reload_failed_total."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.rcode
import pytest

from fastdns._testing.server import ServeProcess, free_port
from fastdns.coordinator.reload import digest
from tests.ops_support import http_get, scrape, value, wait_until
from tests.server_support import cluster_objects, corefile, write_snapshot

NAME = "api.prod.svc.cluster.local."


def _configmap(root: Path, text: str, version: int) -> None:
    """Kubernetes' layout: Corefile → ..data/Corefile, ..data → ..<version> (flipped atomically)."""
    d = root / f"..v{version}"
    d.mkdir()
    (d / "Corefile").write_text(text)
    tmp = root / "..data_tmp"
    os.symlink(d.name, tmp)
    os.replace(tmp, root / "..data")
    if not (root / "Corefile").is_symlink():
        os.symlink("..data/Corefile", root / "Corefile")


def test_configmap_flip_under_load_loses_nothing(tmp_path: Path) -> None:
    cm = tmp_path / "cm"
    cm.mkdir()
    write_snapshot(tmp_path / "cluster.yaml", cluster_objects())
    mport = free_port()
    snap = str(tmp_path / "cluster.yaml")
    old = corefile(snap, f"prometheus 127.0.0.1:{mport}\n    reload 2s 1s")
    new = corefile(snap, f"prometheus 127.0.0.1:{mport}\n    reload 2s 1s\n    loadbalance\n    log")
    _configmap(cm, old, 1)
    qfile = tmp_path / "queries"
    qfile.write_text(f"{NAME} A\nnope.prod.svc.cluster.local A\n")
    with ServeProcess(cm / "Corefile", workers=2, probe=(NAME, "A")) as sp:
        assert value(scrape(mport), "fastdns_config_generation") == 0
        out = tmp_path / "bench.json"
        # open loop: exactly 10 s x 3000/s queries, each answered or lost (no answer in 5 s)
        bench = subprocess.Popen([sys.executable, "-m", "fastdns.cli.bench", "run", "-s",
                                  f"127.0.0.1:{sp.port}", "--queries", str(qfile), "-l", "10",
                                  "-Q", "3000", "-t", "5", "--json", str(out), "-q"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # the load is running (the server has answered some of it) ...
            wait_until(lambda: value(scrape(mport), "coredns_dns_requests_total") > 1000,
                       timeout=30, what="the load to start")
            _configmap(cm, new, 2)                                # the kubelet's update
            wait_until(lambda: value(scrape(mport), "fastdns_config_generation") == 1,
                       timeout=30, what="the reload (timer, no signal)")
            # ... and still is once the new configuration serves: the reload was under load
            assert bench.poll() is None, "the load ended before the reload: nothing tested"
            s = scrape(mport)
            assert value(s, "coredns_reload_version_info", value=digest(new)) == 1
            assert value(s, "coredns_plugin_enabled", name="loadbalance") == 1
            assert bench.wait(60) == 0, bench.stderr.read().decode()
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
        res = json.loads(out.read_text())
        assert res["sent"] == 30000                  # the open loop sends all that was due
        assert res["lost"] == 0 and res["late"] == 0, res
        assert res["answered"] == res["sent"]
        assert set(res["rcodes"]) == {"NOERROR", "NXDOMAIN"}, res["rcodes"]   # no SERVFAIL
        wait_until(lambda: "[INFO] 127.0.0.1:" in sp.output(), what="the new log plugin")
        assert value(scrape(mport), "coredns_reload_failed_total") == 0


def _unknown_plugin(good: str, held: list) -> str:
    return good.replace("kubernetes cluster.local", "kubernetes cluster.local {\n    nosuchplugin")


def _unserved_plugin(good: str, held: list) -> str:
    from fastdns.plugins.runtime import served

    from fastdns.config.registry import SUPPORTED

    name = next((n for n in SUPPORTED if not served(n)), None)
    if name is None:        # the refusal itself: tests/test_config_cli.py (in process)
        pytest.skip("every supported plugin is served")
    return good + f"example.test {{\n    bind 127.0.0.1\n    {name}\n}}\n"


def _port_taken(good: str, held: list) -> str:
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # another program's, no SO_REUSEPORT
    s.bind(("127.0.0.1", 0))
    held.append(s)
    return good + f"example.test:{s.getsockname()[1]} {{\n    bind 127.0.0.1\n    errors\n}}\n"


def _too_many_listeners(good: str, held: list) -> str:
    return good + "".join(f"example.test {{\n    bind 127.0.0.{i}\n    errors\n}}\n"
                          for i in range(2, 20))


@pytest.mark.parametrize("breaker", [_unknown_plugin, _unserved_plugin, _port_taken,
                                     _too_many_listeners],
                         ids=["unknown-plugin", "unserved-plugin", "port-taken", "engine-limit"])
def test_broken_corefile_changes_only_the_failure_counter(tmp_path: Path, breaker) -> None:
    """A Corefile that cannot be parsed, or that the workers could not serve (an
    unserved plugin, a listener another program holds, more listeners than the
    engine has room for), is refused whole: same generation, same workers, same
    answers."""
    write_snapshot(tmp_path / "cluster.yaml", cluster_objects())
    mport, rport = free_port(), free_port()
    conf = tmp_path / "Corefile"
    good = corefile("cluster.yaml", f"prometheus 127.0.0.1:{mport}\n    ready 127.0.0.1:{rport}"
                                    "\n    reload 2s 1s")
    conf.write_text(good)
    with ServeProcess(conf, workers=2, probe=(NAME, "A")) as sp:
        wait_until(lambda: http_get(f"http://127.0.0.1:{rport}/ready")[0] == 200, what="ready")
        before = sp.query(NAME).to_text().split("\n", 1)[1]
        workers = sorted(sp.worker_pids())
        broken = tmp_path / "Corefile.broken"
        held: list = []
        broken.write_text(breaker(good, held))
        os.replace(broken, conf)
        os.kill(sp.pid, signal.SIGHUP)
        wait_until(lambda: value(scrape(mport), "coredns_reload_failed_total") == 1,
                   what="the failure to be counted")
        s = scrape(mport)
        assert value(s, "fastdns_config_generation") == 0
        assert value(s, "coredns_reload_version_info", value=digest(good)) == 1
        assert http_get(f"http://127.0.0.1:{rport}/ready")[0] == 200
        r = sp.query(NAME)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.to_text().split("\n", 1)[1] == before
        assert sorted(sp.worker_pids()) == workers
        assert "plugin/reload" in sp.output()
        for h in held:
            h.close()
        # the same broken file is not counted again at every tick; fixing it reloads nothing
        os.kill(sp.pid, signal.SIGHUP)
        tmp = tmp_path / "Corefile.new"
        tmp.write_text(good)
        os.replace(tmp, conf)                                  # never a half-written file
        os.kill(sp.pid, signal.SIGHUP)
        time.sleep(0.5)
        s = scrape(mport)
        assert value(s, "coredns_reload_failed_total") == 1
        assert value(s, "fastdns_config_generation") == 0
