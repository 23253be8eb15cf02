"""Bad input to `fastdns serve`: a clear message naming what and where, exit
code 1, no traceback, no orphan worker; and a snapshot broken while serving
keeps the last good answers."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from fastdns._testing.server import ServeProcess, alive, free_port
from tests.server_support import (
    cluster_objects,
    make_cluster_dir,
    write_snapshot_atomic,
)

API = "api.prod.svc.cluster.local."


def _addresses(srv: ServeProcess, qname: str = API) -> set[str]:
    return {rd.to_text() for rr in srv.query(qname, "A").answer for rd in rr}


def _fails(conf: Path | None, *, env: dict | None = None, workers: int = 2, port: int | None = None,
           timeout: float = 20.0) -> str:
    """Run to exit; check code 1, no traceback, no orphan, no IPC dir or shm left."""
    tmpdir = Path(tempfile.mkdtemp(prefix="fastdns-test-"))
    srv = ServeProcess(conf, workers=workers, port=port, env={**(env or {}), "TMPDIR": str(tmpdir)})
    try:
        code, out = srv.run_to_exit(timeout)
        assert code == 1, out
        assert "Traceback" not in out, out
        assert not srv.leftovers(), f"orphan workers {srv.leftovers()}"
        assert not list(tmpdir.iterdir()), "IPC directory left behind"
        assert not [n for n in os.listdir("/dev/shm") if f"fastdns-{srv.pid}-" in n]
        return out
    finally:
        srv.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_broken_corefile_names_file_line_column(tmp_path: Path) -> None:
    conf = make_cluster_dir(tmp_path)
    text = conf.read_text().replace("pods insecure", "pods insecure\n        bogus 1")
    conf.write_text(text)
    out = _fails(conf)
    line = text.splitlines().index("        bogus 1") + 1
    assert f"{conf}:{line}:9:" in out
    assert "bogus" in out


def test_unknown_plugin_names_file_line_column(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(". {\n    bind 127.0.0.1\n  nosuchplugin\n}\n")
    out = _fails(conf)
    assert f"{conf}:3:3:" in out and "nosuchplugin" in out


def test_missing_corefile(tmp_path: Path) -> None:
    out = _fails(tmp_path / "nope")
    assert str(tmp_path / "nope") in out


def test_broken_snapshot_at_start_names_the_file(tmp_path: Path) -> None:
    conf = make_cluster_dir(tmp_path)
    (tmp_path / "cluster.yaml").write_text("items: [\n")
    out = _fails(conf)
    assert str(tmp_path / "cluster.yaml") in out


def test_snapshot_with_a_bad_object_at_start(tmp_path: Path) -> None:
    objs = cluster_objects()
    del objs[2]["spec"]["clusterIPs"], objs[2]["spec"]["clusterIP"]
    objs[2]["spec"]["ports"] = "eighty"
    conf = make_cluster_dir(tmp_path, objects=objs)
    out = _fails(conf)
    assert "cluster.yaml" in out


def test_snapshot_broken_later_keeps_serving_the_old_answers(tmp_path: Path) -> None:
    conf = make_cluster_dir(tmp_path)
    snap = tmp_path / "cluster.yaml"
    with ServeProcess(conf, workers=2) as srv:
        assert _addresses(srv) == {"10.96.1.10"}
        broken = tmp_path / "broken.yaml"
        broken.write_text("apiVersion: v1\nkind: List\nitems: [\n")
        broken.rename(snap)
        deadline = time.monotonic() + 20
        while "cluster.yaml" not in srv.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "cluster.yaml" in srv.output(), "the broken snapshot was not reported"
        for _ in range(20):                                      # many source ports
            assert _addresses(srv) == {"10.96.1.10"}
        assert len(srv.worker_pids()) == 2
        write_snapshot_atomic(snap, cluster_objects(api_ip="10.96.1.12"))   # fixed: followed
        deadline = time.monotonic() + 20
        while _addresses(srv) != {"10.96.1.12"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _addresses(srv) == {"10.96.1.12"}
        assert "Traceback" not in srv.output()


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_port_already_bound_by_someone_else(tmp_path: Path, proto: str) -> None:
    conf = make_cluster_dir(tmp_path)
    port = free_port()
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as squatter:          # no SO_REUSEPORT
        squatter.bind(("127.0.0.1", port))
        if proto == "tcp":
            squatter.listen(1)
        out = _fails(conf, port=port)
    assert f"127.0.0.1:{port}/{proto}" in out
    assert "Address already in use" in out


def test_kubernetes_without_any_source(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(". {\n    bind 127.0.0.1\n    kubernetes cluster.local\n}\n")
    out = _fails(conf, env={"KUBERNETES_SERVICE_HOST": None, "KUBERNETES_SERVICE_PORT": None})
    for word in ("kubeconfig", "endpoint", "snapshot", "KUBERNETES_SERVICE_HOST"):
        assert word in out


def test_worker_pids_of_a_failed_start_are_gone(tmp_path: Path) -> None:
    """The bad-port failure happens after workers were spawned: they must all be reaped."""
    conf = make_cluster_dir(tmp_path)
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        srv = ServeProcess(conf, workers=2, port=port)
        try:
            code, _out = srv.run_to_exit()
            assert code == 1
            assert srv.seen_workers, "expected workers to have been spawned"
            assert not [p for p in srv.seen_workers if alive(p)]
        finally:
            srv.close()
