"""The live source: the real ``kubernetes`` client against a list/watch server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


import pytest

from fastdns.errors import KubernetesError
from fastdns.plugins.kubernetes import KubernetesPlugin
from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.plugins.kubernetes.source import WatchSource
from fastdns.records import NXDOMAIN, PTR, A, SRV
from tests.k8s_support import (
    FakeAPI, endpoint, namespace, pod, section, service, slice_, to_message, wait_for,
)

ZONE = "cluster.local."


@pytest.fixture
def api():
    a = FakeAPI().start()
    a.put(namespace("default"))
    a.put(service("nginx", ips=["10.96.0.10"], ports=[("http", 80, "TCP")]))
    a.put(slice_("nginx-1", "nginx", [endpoint("10.0.0.1"), endpoint("10.0.0.2")],
                 ports=[("http", 8080, "TCP")]))
    yield a
    a.stop()


@pytest.fixture
def plugin(api, tmp_path):
    deltas = []
    conf = KubernetesConf(zones=(ZONE, "in-addr.arpa."),
                          kubeconfig=api.kubeconfig(str(tmp_path / "kubeconfig")))
    p = KubernetesPlugin(conf, deltas.append, backoff=(0.05, 0.2), watch_timeout=30)
    p.deltas = deltas
    p.start()
    yield p
    p.stop()


def a_records(p, name):
    inner = p.answers().get(name)
    if inner is None or A not in inner:
        return None
    return sorted(rd.address for rd in to_message(name, A, inner[A]).answer[0])


def test_sync_then_every_change_reaches_the_answers(api, plugin):
    assert not plugin.synced or plugin.answers()
    wait_for(lambda: plugin.synced, what="initial sync")
    first = plugin.deltas[0]
    assert "nginx.default.svc.cluster.local." in first.upserts and not first.deletes
    assert a_records(plugin, "nginx.default.svc.cluster.local.") == ["10.96.0.10"]
    # the watch asked for bookmarks and kept the list's resourceVersion
    watches = [q for path, q in api.requests if q.get("watch") == "true"]
    assert watches and all(q["allowWatchBookmarks"] == "true" for q in watches)
    assert all(q["resourceVersion"] for q in watches)

    # Service created (headless) + its EndpointSlice
    api.put(service("db", headless=True, ports=[("pg", 5432, "TCP")]))
    api.put(slice_("db-1", "db", [endpoint("10.0.1.1", hostname="db-0"),
                                  endpoint("10.0.1.2", hostname="db-1")],
                   ports=[("pg", 5432, "TCP")]))
    wait_for(lambda: a_records(plugin, "db.default.svc.cluster.local.") ==
             ["10.0.1.1", "10.0.1.2"], what="headless service")
    srv = plugin.answers()["_pg._tcp.db.default.svc.cluster.local."][SRV]
    msg = to_message("_pg._tcp.db.default.svc.cluster.local.", SRV, srv)
    assert {rd.target.to_text() for rd in msg.answer[0]} == {
        "db-0.db.default.svc.cluster.local.", "db-1.db.default.svc.cluster.local."}
    ptr = plugin.answers()["1.1.0.10.in-addr.arpa."][PTR]
    assert ptr.answer[0].rdata == "db-0.db.default.svc.cluster.local."

    # EndpointSlice updated: one endpoint not ready any more
    api.put(slice_("db-1", "db", [endpoint("10.0.1.1", hostname="db-0"),
                                  endpoint("10.0.1.2", ready=False, hostname="db-1")],
                   ports=[("pg", 5432, "TCP")]))
    wait_for(lambda: a_records(plugin, "db.default.svc.cluster.local.") == ["10.0.1.1"],
             what="endpoint not ready")
    assert "db-1.db.default.svc.cluster.local." not in plugin.answers()
    assert "2.1.0.10.in-addr.arpa." not in plugin.answers()

    # Service updated: new cluster IP, PTR follows
    api.put(service("nginx", ips=["10.96.0.11"], ports=[("http", 80, "TCP")]))
    wait_for(lambda: a_records(plugin, "nginx.default.svc.cluster.local.") == ["10.96.0.11"],
             what="service update")
    answers = plugin.answers()
    assert "10.0.96.10.in-addr.arpa." not in answers
    assert answers["11.0.96.10.in-addr.arpa."][PTR].answer[0].rdata == \
        "nginx.default.svc.cluster.local."

    # Service deleted: its names and PTRs are gone (NXDOMAIN)
    api.delete(service("db", headless=True))
    wait_for(lambda: "db.default.svc.cluster.local." not in plugin.answers(), what="delete")
    assert "1.1.0.10.in-addr.arpa." not in plugin.answers()

    # Namespace deleted: nothing below it answers
    api.delete(namespace("default"))
    wait_for(lambda: "default.svc.cluster.local." not in plugin.answers(), what="ns delete")
    assert not [n for n in plugin.answers() if n.endswith("default.svc.cluster.local.")]
    api.put(namespace("default"))
    wait_for(lambda: a_records(plugin, "nginx.default.svc.cluster.local.") == ["10.96.0.11"],
             what="namespace back")
    # every delta after the first is incremental: never the whole state again
    assert all(len(d.upserts) < len(first.upserts) for d in plugin.deltas[1:])


def test_410_gone_relists_and_replaces_state_atomically(api, plugin):
    wait_for(lambda: plugin.synced, what="sync")
    # history compacted while the watches are cut: the client's RV is now too old
    api.compact()
    api.put(service("late", ips=["10.96.0.20"]))
    api.delete(service("nginx"))
    api.compact()
    seen = len(plugin.deltas)
    api.drop_watches()
    wait_for(lambda: plugin.watch.relists["Service"] >= 1, what="re-list after 410")
    wait_for(lambda: a_records(plugin, "late.default.svc.cluster.local.") == ["10.96.0.20"],
             what="state after re-list")
    answers = plugin.answers()
    assert "nginx.default.svc.cluster.local." not in answers
    # the re-list of Services arrived as ONE delta carrying both the add and the delete
    svc_deltas = [d for d in plugin.deltas[seen:]
                  if "late.default.svc.cluster.local." in d.upserts]
    assert len(svc_deltas) == 1
    assert "nginx.default.svc.cluster.local." in svc_deltas[0].deletes


def test_dropped_connection_resumes_from_resource_version(api, plugin):
    wait_for(lambda: plugin.synced, what="sync")
    def svc_watches():
        return [int(q["resourceVersion"]) for p, q in api.requests
                if p == "/api/v1/services" and q.get("watch") == "true"]
    wait_for(lambda: len(svc_watches()) >= 1, what="first watch")   # synced can precede it
    before = len(svc_watches())
    api.drop_watches()
    wait_for(lambda: len(svc_watches()) > before, what="reconnect")
    api.put(service("after-drop", ips=["10.96.0.30"]))
    wait_for(lambda: a_records(plugin, "after-drop.default.svc.cluster.local.") ==
             ["10.96.0.30"], what="change after reconnect")
    assert plugin.watch.relists["Service"] == 0  # resumed, not re-listed
    rvs = svc_watches()
    assert len(rvs) >= 2 and rvs[-1] >= rvs[0]


def test_bookmarks_advance_the_resource_version(api, plugin):
    wait_for(lambda: plugin.synced, what="sync")
    # the fake API sends a bookmark to the watch streams listening when it is made
    wait_for(lambda: api.watching["Service"] and api.watching["EndpointSlice"],
             what="both watches listening")
    bm = api.bookmark()
    wait_for(lambda: plugin.watch.resource_versions.get("Service") == bm
             and plugin.watch.resource_versions.get("EndpointSlice") == bm,
             what="the bookmark on both streams")


def test_not_synced_until_the_api_answers(tmp_path):
    api = FakeAPI()  # not started: connection refused
    conf = KubernetesConf(zones=(ZONE,), kubeconfig=api.kubeconfig(str(tmp_path / "kc")))
    api.server.server_close()
    src = WatchSource(conf, lambda d: None, backoff=(0.05, 0.1))
    src.start()
    try:
        assert not src.wait_synced(0.3)
        assert src.compiler.answers == {}
    finally:
        src.stop()


def test_missing_configuration_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(KubernetesError, match="KUBERNETES_SERVICE_HOST.*not set"):
        WatchSource(KubernetesConf(zones=(ZONE,)), lambda d: None)
    with pytest.raises(KubernetesError, match="file not found"):
        WatchSource(KubernetesConf(zones=(ZONE,), kubeconfig=str(tmp_path / "nope")),
                    lambda d: None)


def test_nxdomain_carries_the_soa_minimum(plugin):
    wait_for(lambda: plugin.synced, what="sync")
    ans = plugin.compiler.lookup("nope.default.svc.cluster.local.", A)
    msg = to_message("nope.default.svc.cluster.local.", A, ans)
    assert msg.rcode() == NXDOMAIN
    soa = msg.authority[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text(), soa.minimum) == (
        "ns.dns.cluster.local.", "hostmaster.cluster.local.", 5)
    assert section(msg.authority) and msg.authority[0].ttl == 5


@contextlib.contextmanager
def synced_plugin(a: FakeAPI, tmp_path, **conf) -> Iterator[KubernetesPlugin]:
    """Start ``a`` (if it is not running) and a KubernetesPlugin watching it; yield it
    once synced; stop both."""
    if not a.thread.is_alive():
        a.start()
    try:
        kc = a.kubeconfig(str(tmp_path / "kc"))
        p = KubernetesPlugin(KubernetesConf(zones=(ZONE,), kubeconfig=kc, **conf), lambda d: None,
                             backoff=(0.05, 0.2), watch_timeout=30)
        p.start()
        try:
            wait_for(lambda: p.synced, what="the first sync")
            yield p
        finally:
            p.stop()
    finally:
        a.stop()


def test_large_lists_are_read_in_pages(tmp_path):
    """1,203 Services arrive in pages of 500 (limit/continue), all compiled; the watch
    then starts from the list's resourceVersion."""
    a = FakeAPI()
    a.put(namespace("default"))
    for i in range(1203):
        a.put(service(f"s{i}", ips=[f"10.97.{i >> 8}.{i & 255}"]))
    with synced_plugin(a, tmp_path) as p:
        assert a_records(p, "s1202.default.svc.cluster.local.") == ["10.97.4.178"]
        assert len(p.watch.index.services) == 1203
        lists = [q for path, q in a.requests
                 if path == "/api/v1/services" and q.get("watch") != "true"]
        assert [q.get("limit") for q in lists] == ["500"] * 3
        assert [bool(q.get("continue")) for q in lists] == [False, True, True]

        def service_watches():
            return [q for path, q in a.requests
                    if path == "/api/v1/services" and q.get("watch") == "true"]

        wait_for(service_watches, what="the Service watch")  # it follows the sync
        watch = service_watches()[0]
        assert watch["resourceVersion"] == str(a.rv)      # nothing changed since the list


def test_an_expired_continue_token_lists_again_from_the_start(tmp_path):
    """A 410 on a continue token (the server compacted the list's snapshot) restarts
    the list; the state is complete, nothing from the broken list is half-applied."""
    a = FakeAPI()
    a.put(namespace("default"))
    for i in range(1100):
        a.put(service(f"s{i}", ips=[f"10.98.{i >> 8}.{i & 255}"]))
    expired = []
    orig = a._list

    def list_expiring_once(kind, q):
        if q.get("continue") and not expired:
            expired.append(q["continue"])
            a.expire_pages()
        return orig(kind, q)

    a._list = list_expiring_once
    with synced_plugin(a, tmp_path) as p:
        assert expired and len(p.watch.index.services) == 1100
        assert p.watch.relists["Service"] == 1
        firsts = [q for path, q in a.requests if path == "/api/v1/services"
                  and q.get("watch") != "true" and not q.get("continue")]
        assert len(firsts) == 2


def test_pods_verified_follow_the_pod_watch(tmp_path):
    """`pods verified`: Pods are listed and watched too; a pod's A record appears with
    the Pod, moves with its IP, and goes when the Pod is deleted or has finished."""
    a = FakeAPI()
    a.put(namespace("default"))
    a.put(pod("web-0", "10.244.0.7"))
    with synced_plugin(a, tmp_path, pods="verified") as p:
        name = "10-244-0-7.default.pod.cluster.local."
        assert a_records(p, name) == ["10.244.0.7"]
        lists = [q for path, q in a.requests if path == "/api/v1/pods"]
        assert lists and "status.phase!=Succeeded" in lists[0]["fieldSelector"]
        a.put(pod("web-0", "10.244.0.8"))                       # new IP
        wait_for(lambda: a_records(p, "10-244-0-8.default.pod.cluster.local.") ==
                 ["10.244.0.8"], what="the pod's new address")
        assert name not in p.answers()
        a.put(pod("web-1", "10.244.0.9", phase="Succeeded"))   # finished: no record
        a.put(pod("web-2", "10.244.0.10"))
        wait_for(lambda: a_records(p, "10-244-0-10.default.pod.cluster.local.") ==
                 ["10.244.0.10"], what="a second pod")
        assert "10-244-0-9.default.pod.cluster.local." not in p.answers()
        a.delete(pod("web-0", "10.244.0.8"))
        wait_for(lambda: "10-244-0-8.default.pod.cluster.local." not in p.answers(),
                 what="the deleted pod's record gone")


def test_api_errors_are_logged_and_retried(tmp_path, caplog):
    """A 500 and then a body that is not JSON on the EndpointSlice list: each is logged
    naming the kind and what went wrong, the list is retried, and the state syncs whole."""
    a = FakeAPI()
    a.put(namespace("default"))
    a.put(service("nginx", ips=["10.96.0.10"], ports=[("http", 80, "TCP")]))
    a.put(slice_("nginx-1", "nginx", [endpoint("10.0.0.1")], ports=[("http", 80, "TCP")]))
    failures = [(500, {"kind": "Status", "code": 500, "message": "etcd is sad"}),
                (200, b"this is not json")]
    orig = a._list

    def flaky(kind, q):
        if kind == "EndpointSlice" and failures:
            return failures.pop(0)
        return orig(kind, q)

    a._list = flaky
    with caplog.at_level(logging.WARNING, logger="fastdns.plugin.kubernetes"):
        with synced_plugin(a, tmp_path) as p:
            assert not failures
            assert a_records(p, "nginx.default.svc.cluster.local.") == ["10.96.0.10"]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("EndpointSlice list/watch failed" in m and "500" in m for m in msgs), msgs
    assert any("EndpointSlice list/watch failed (DecodeError" in m for m in msgs), msgs
    assert not any("Traceback" in m for m in msgs)
