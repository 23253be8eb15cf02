"""Process behaviour of `fastdns serve` started as a user would (a subprocess):
both workers answer on the same port, a killed worker is replaced while the
other keeps answering, a snapshot change reaches every worker, and SIGTERM/SIGINT
leave no process, socket, shared memory or IPC directory."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from fastdns._testing.server import ServeProcess, alive, port_is_free, udp_socket_owners
from tests.server_support import (
    cluster_objects,
    make_cluster_dir,
    write_snapshot,
    write_snapshot_atomic,
)

API = "api.prod.svc.cluster.local."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path]]:
    d = tmp_path_factory.mktemp("procs")
    conf = make_cluster_dir(d)
    with ServeProcess(conf, workers=2) as srv:
        yield srv, d / "cluster.yaml"


def fan_out(srv: ServeProcess, qname: str, n: int = 64, wait: float = 0.5,
            socks: list[socket.socket] | None = None) -> dict[int, dns.message.Message]:
    """One query from each of ``n`` source ports; the answers that came back within ``wait``.

    Keys are the index of the socket; pass ``socks`` to reuse the same source ports.
    """
    own = socks is None
    socks = socks or [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.setblocking(False)
            s.sendto(dns.message.make_query(qname, "A").to_wire(), (srv.host, srv.port))
        return collect(socks, wait)
    finally:
        if own:
            for s in socks:
                s.close()


def collect(socks: list[socket.socket], wait: float) -> dict[int, dns.message.Message]:
    got: dict[int, dns.message.Message] = {}
    index = {s.fileno(): i for i, s in enumerate(socks)}
    deadline = time.monotonic() + wait
    while len(got) < len(socks):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(socks), [], [], left)
        for s in ready:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                continue
            got[index[s.fileno()]] = dns.message.from_wire(data)
    return got


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rr in msg.answer for rd in rr}


def test_two_workers_answer_on_the_same_port(served) -> None:
    """Stop one worker (SIGSTOP): the flows the kernel hashes to it go unanswered
    while the other worker answers the rest; on SIGCONT the stopped worker
    answers what queued up for it.  Done for each worker in turn."""
    srv, _ = served
    pids = srv.worker_pids()
    assert len(pids) == 2
    assert sorted(udp_socket_owners(srv.port, pids)) == pids       # both bound the port
    for stopped in pids:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
        try:
            os.kill(stopped, signal.SIGSTOP)
            try:
                # the stopped worker cannot answer, however long this waits
                first = fan_out(srv, API, socks=socks, wait=2.0)
            finally:
                os.kill(stopped, signal.SIGCONT)
            late = collect([s for i, s in enumerate(socks) if i not in first], 10.0)
        finally:
            for s in socks:
                s.close()
        assert 0 < len(first) < 64, f"with worker {stopped} stopped, {len(first)}/64 answered"
        assert len(first) + len(late) == 64           # the stopped worker answered its share
        assert all(addresses(m) == {"10.96.1.10"} for m in first.values())
        assert all(addresses(m) == {"10.96.1.10"} for m in late.values())


def _hammer(srv: ServeProcess, stop: threading.Event, log: list[tuple[float, str]]) -> None:
    """Sequential queries, each from a fresh source port (one in flight at a time).

    A query unanswered after 3 s counts as lost: far longer than a loaded machine
    takes to answer, so "lost" means lost."""
    q = dns.message.make_query(API, "A")
    while not stop.is_set():
        try:
            r = dns.query.udp(q, srv.host, port=srv.port, timeout=3.0)
            ok = r.rcode() == dns.rcode.NOERROR and addresses(r) == {"10.96.1.10"}
            log.append((time.monotonic(), "ok" if ok else dns.rcode.to_text(r.rcode())))
        except dns.exception.Timeout:
            log.append((time.monotonic(), "lost"))


def test_kill9_worker_is_replaced_and_queries_keep_being_answered(served) -> None:
    srv, _ = served
    before = srv.worker_pids()
    victim = before[0]
    stop = threading.Event()
    logs: list[list[tuple[float, str]]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_hammer, args=(srv, stop, lg)) for lg in logs]
    for t in threads:
        t.start()
    def oks_after(t0: float) -> list[int]:
        return [sum(1 for t, r in list(lg) if t > t0 and r == "ok") for lg in logs]

    try:
        # every client is being answered before the kill ...
        assert _wait(lambda: min(oks_after(0.0)) >= 10, 30), oks_after(0.0)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        new: list[int] = []
        deadline = killed_at + 30
        while time.monotonic() < deadline:
            now = srv.worker_pids()
            new = [p for p in now if p not in before]
            if len(now) == 2 and new and udp_socket_owners(srv.port, new):
                break
            time.sleep(0.05)
        replaced_at = time.monotonic()
        # ... and keeps being answered with the new worker in place
        kept = _wait(lambda: min(oks_after(replaced_at)) >= 20, 30)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert new, f"no replacement worker within 30 s:\n{srv.output()}"
    assert victim not in srv.worker_pids()
    results = [r for lg in logs for _, r in lg]
    lost = results.count("lost")
    bad = [r for r in results if r not in ("ok", "lost")]
    print(f"kill -9: replaced after {replaced_at - killed_at:.2f}s; {lost} lost of {len(results)}")
    assert not bad, f"wrong answers around the restart: {bad[:5]}"
    # at most one query per client thread was in flight in the dead worker's socket
    assert lost <= len(threads), f"{lost} lost of {len(results)}"
    assert kept, f"answers per client after the replacement: {oks_after(replaced_at)}"
    answers = fan_out(srv, API, wait=10.0)            # every flow answered, both workers up
    assert len(answers) == 64


@pytest.mark.parametrize("how", ["rename", "in_place"])
def test_snapshot_change_reaches_every_worker(served, how: str) -> None:
    """Every source port (both workers), UDP and TCP, answers the new address. The
    snapshot is polled every 0.25 s; how soon the change is everywhere is a benchmark
    figure (benchmarks/RESULTS.md, bench_pipeline.py: 0.3-0.6 s), here 20 s is the
    limit."""
    srv, snap = served
    old, new = "10.96.1.10", "10.96.1.11"
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
    try:
        assert all(addresses(m) == {old} for m in fan_out(srv, API, socks=socks).values())
        objs = cluster_objects(api_ip=new)
        if how == "rename":
            write_snapshot_atomic(snap, objs)
        else:
            write_snapshot(snap, objs)          # truncate + write the same inode
        changed = time.monotonic()
        seen_new: set[int] = set()
        while time.monotonic() - changed < 20.0:
            got = fan_out(srv, API, socks=socks, wait=0.5)
            seen_new |= {i for i, m in got.items() if addresses(m) == {new}}
            if len(seen_new) == len(socks):
                break
        elapsed = time.monotonic() - changed
        tcp = srv.query(API, "A", tcp=True, timeout=10)
        final = fan_out(srv, API, socks=socks, wait=10.0)
    finally:
        for s in socks:
            s.close()
        write_snapshot_atomic(snap, cluster_objects())        # back for the other tests
        _wait_for(srv, API, {old})
    print(f"snapshot {how}: every source port saw the change after {elapsed:.2f}s")
    assert len(seen_new) == len(socks), f"only {len(seen_new)} source ports saw the change " \
                                        f"in {elapsed:.1f} s"
    assert addresses(tcp) == {new}
    assert len(final) == len(socks) and all(addresses(m) == {new} for m in final.values())


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _wait_for(srv: ServeProcess, qname: str, want: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fan_out(srv, qname, n=16, wait=1.0)
        if len(got) == 16 and all(addresses(m) == want for m in got.values()):
            return
    raise AssertionError(f"{qname} did not become {want}")


def _shm_entries(tag: str) -> set[str]:
    return {n for n in os.listdir("/dev/shm") if tag in n}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_leaves_nothing_behind(tmp_path: Path, sig: int) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    conf = make_cluster_dir(tmp_path, extra="cache 30")
    srv = ServeProcess(conf, workers=2, env={"TMPDIR": str(tmpdir)})
    idle = None
    try:
        srv.start()
        workers = srv.worker_pids()
        assert len(workers) == 2
        shm = _shm_entries(f"fastdns-{srv.pid}")
        assert shm, "the cache's shared-memory segment should exist while serving"
        ipc = [p.name for p in tmpdir.iterdir() if p.name.startswith("fastdns-ipc-")]
        assert ipc, "the IPC directory should exist while serving"
        assert srv.query(API, "A", tcp=True).rcode() == dns.rcode.NOERROR
        idle = socket.create_connection((srv.host, srv.port))      # an idle client connection
        assert not port_is_free(srv.port)
        code = srv.stop(sig, timeout=15)
        assert code == 0, srv.output()
        assert not [p for p in workers if alive(p)], "workers left running"
        assert not srv.leftovers()
        assert port_is_free(srv.port), "a socket is still bound"
        assert not _shm_entries(f"fastdns-{srv.pid}"), "shared memory left in /dev/shm"
        assert not list(tmpdir.iterdir()), "IPC directory left behind"
        assert "Traceback" not in srv.output()
    finally:
        if idle is not None:
            idle.close()
        srv.close()
