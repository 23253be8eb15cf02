"""`fastdns.server.Server` from Python: in-process (workers=0) and with worker
processes; answers checked against the Kubernetes compiler's reference; stop
leaves no thread, process, socket, IPC directory or shared memory; errors are
typed."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from fastdns._testing.server import alive, child_pids, free_port, port_is_free
from fastdns.errors import ConfigError, ServerError, SnapshotError
from fastdns.server import Server
from tests.server_support import Reference, corefile, make_cluster_dir, sections

CASES = [("api.prod.svc.cluster.local.", "A"), ("_pg._tcp.db.prod.svc.cluster.local.", "SRV"),
         ("nope.prod.svc.cluster.local.", "A"), ("10-244-1-5.prod.pod.cluster.local.", "A"),
         ("10.1.96.10.in-addr.arpa.", "PTR")]


def _ask(host: str, port: int, qname: str, qtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype)
    if tcp:
        return dns.query.tcp(q, host, port=port, timeout=2)
    return dns.query.udp(q, host, port=port, timeout=2)


def _fastdns_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fastdns-")]


@pytest.mark.parametrize("workers", [0, 2])
def test_serves_the_reference_answers_and_cleans_up(tmp_path: Path, workers: int) -> None:
    conf = make_cluster_dir(tmp_path, extra="cache 30")
    ref = Reference(conf)
    with Server(path=conf, workers=workers, port=0) as srv:
        (host, port), = srv.listeners
        assert host == "127.0.0.1"
        for qname, qtype in CASES:
            for tcp in (False, True):
                got = _ask(host, port, qname, qtype, tcp)
                assert sections(got) == sections(ref.message(qname, qtype)), (qname, qtype, tcp)
        pids = srv.worker_pids
        if workers == 0:
            assert pids == [os.getpid()]
            assert "fastdns-worker-0" in _fastdns_threads()
        else:
            assert len(pids) == 2 and sorted(pids) == child_pids(os.getpid())
        ipc_dir = srv._coord.publisher.dir
        shm = srv._coord.cache_name
        assert shm and os.path.exists(f"/dev/shm{shm}")
        assert os.path.isdir(ipc_dir)
    assert not _fastdns_threads()
    assert not [p for p in pids if p != os.getpid() and alive(p)]
    assert port_is_free(port)
    assert not os.path.exists(ipc_dir)
    assert not os.path.exists(f"/dev/shm{shm}")


def test_corefile_text_and_explicit_start_stop(tmp_path: Path) -> None:
    make_cluster_dir(tmp_path)
    text = corefile(snapshot=str(tmp_path / "cluster.yaml"))
    port = free_port()
    srv = Server(text, workers=0, port=port)
    assert srv.listeners == [("127.0.0.1", port)]
    srv.start()
    try:
        srv.wait_ready(20)
        assert srv.running
        r = _ask("127.0.0.1", port, "api.prod.svc.cluster.local.", "A")
        assert {rd.to_text() for rr in r.answer for rd in rr} == {"10.96.1.10"}
    finally:
        srv.stop()
    assert not srv.running
    assert port_is_free(port)


def test_demo_in_process() -> None:
    with Server(workers=0, port=0) as srv:
        (host, port), = srv.listeners
        r = _ask(host, port, "nginx-svc.default.svc.cluster.local.", "A")
        assert r.rcode() == dns.rcode.NOERROR
        assert {rd.to_text() for rr in r.answer for rd in rr} == {"10.96.0.50"}
        assert _ask(host, port, "example.com.", "A").rcode() == dns.rcode.SERVFAIL   # no next plugin


def test_broken_corefile_raises_config_error_with_position() -> None:
    with pytest.raises(ConfigError) as err:
        Server(". {\n    bind 127.0.0.1\n    nosuchplugin\n}\n", workers=0, port=0)
    assert "Corefile:3:5" in str(err.value)


def test_missing_corefile_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Server(path=tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_broken_snapshot_raises_snapshot_error(tmp_path: Path, workers: int) -> None:
    conf = make_cluster_dir(tmp_path)
    (tmp_path / "cluster.yaml").write_text("items: [\n")
    srv = Server(path=conf, workers=workers, port=0)
    with pytest.raises(SnapshotError) as err, srv:
        pass
    assert "cluster.yaml" in str(err.value)
    assert not _fastdns_threads()
    assert not child_pids(os.getpid())


@pytest.mark.parametrize("workers", [0, 2])
def test_port_taken_raises_server_error(tmp_path: Path, workers: int) -> None:
    conf = make_cluster_dir(tmp_path)
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(ServerError) as err, Server(path=conf, workers=workers, port=port):
            pass
    assert f"127.0.0.1:{port}/udp" in str(err.value)
    assert not _fastdns_threads()
    assert not [p for p in child_pids(os.getpid())]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Server("x", path="y")
    with pytest.raises(ValueError):
        Server(workers=-1)
