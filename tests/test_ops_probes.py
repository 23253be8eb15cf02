"""/health and /ready through real HTTP: ready only after the Kubernetes list; lameduck."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import dns.rcode
import pytest

from fastdns._testing.server import ServeProcess, free_port
from tests.k8s_support import FakeAPI, endpoint, namespace, service, slice_
from tests.ops_support import http_get, wait_until
from tests.server_support import cluster_objects, corefile, write_snapshot

NAME = "web.default.svc.cluster.local."


def test_ready_after_sync_and_health_through_lameduck(tmp_path: Path) -> None:
    api = FakeAPI().start()
    api.put(namespace("default"))
    api.put(service("web", ips=["10.96.7.7"], ports=[("http", 80, "TCP")]))
    api.put(slice_("web-1", "web", [endpoint("10.0.7.1")], ports=[("http", 8080, "TCP")]))
    hport, rport = free_port(), free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(f""". {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        endpoint http://127.0.0.1:{api.port}
    }}
    health 127.0.0.1:{hport} {{
        lameduck 3s
    }}
    ready 127.0.0.1:{rport}
}}
""")
    health, ready = f"http://127.0.0.1:{hport}/health", f"http://127.0.0.1:{rport}/ready"
    api.cond.acquire()               # every list request waits: the index cannot sync
    held = True
    sp = ServeProcess(conf, workers=2)
    try:
        sp.start(wait=False)
        wait_until(lambda: http_get(health)[0] == 200, what="/health")
        assert http_get(health) == (200, "OK")
        wait_until(lambda: len(sp.worker_pids()) == 2 and sp.try_query(NAME) is not None,
                   what="workers answering")
        for _ in range(5):                                   # not synced: 503, SERVFAIL
            code, body = http_get(ready)
            assert code == 503 and "kubernetes" in body, (code, body)
            assert sp.query(NAME).rcode() == dns.rcode.SERVFAIL
            time.sleep(0.1)
        api.cond.release()            # the list answers now
        held = False
        wait_until(lambda: http_get(ready)[0] == 200, timeout=15, what="/ready 200 after sync")
        assert http_get(ready) == (200, "OK")
        r = sp.query(NAME)
        assert r.rcode() == dns.rcode.NOERROR and "10.96.7.7" in r.to_text()

        # lameduck: SIGTERM → still serving for 3 s, /health 200, /ready 503, then gone
        t0 = time.monotonic()
        sp.proc.send_signal(signal.SIGTERM)
        while True:
            # a round that starts 1 s or more after the signal is the last: it is still
            # well inside the lameduck, however long the round itself takes
            last = time.monotonic() - t0 >= 1.0
            assert http_get(health) == (200, "OK")
            assert http_get(ready)[0] == 503
            assert sp.query(NAME, timeout=10).rcode() == dns.rcode.NOERROR
            if last:
                break
            time.sleep(0.1)
        assert sp.proc.wait(30) == 0
        assert time.monotonic() - t0 >= 3.0               # not before the lameduck is over
        assert "lameduck over: stopping" in sp.output()
        assert http_get(health)[0] == 0                    # nothing listens any more
    finally:
        if held:
            api.cond.release()
        sp.close()
        api.stop()


def test_sigterm_without_lameduck_stops_at_once(tmp_path: Path) -> None:
    hport = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(f". {{\n    bind 127.0.0.1\n    health 127.0.0.1:{hport}\n}}\n")
    with ServeProcess(conf, workers=1, probe=("example.org.", "A")) as sp:
        assert http_get(f"http://127.0.0.1:{hport}/health") == (200, "OK")
        sp.proc.send_signal(signal.SIGTERM)
        assert sp.proc.wait(30) == 0
        # no lameduck phase: it stopped at once (the lameduck test sees this line)
        assert "lameduck" not in sp.output()


@pytest.mark.parametrize("workers", [0, 1])
def test_ready_answers_200_at_the_first_probe_after_sync(tmp_path: Path, workers: int) -> None:
    """Embedded (workers=0: the worker is a thread) or with a process: /ready is
    200 at the first probe once the sources synced a while ago (the grace after
    the sync runs from the sync, not from the first probe)."""
    import fastdns
    from fastdns.coordinator.ops import SYNC_GRACE

    write_snapshot(tmp_path / "cluster.yaml", cluster_objects())
    rport = free_port()
    core = corefile(str(tmp_path / "cluster.yaml"), f"ready 127.0.0.1:{rport}")
    with fastdns.Server(core, workers=workers, port=0):
        time.sleep(SYNC_GRACE * 4)
        assert http_get(f"http://127.0.0.1:{rport}/ready") == (200, "OK")
