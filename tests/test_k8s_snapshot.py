"""Snapshot files: List, multi-document YAML, JSON, broken files, missing fields, re-reads."""

from __future__ import annotations

import json
import logging
import os

import pytest
import yaml

from fastdns.errors import SnapshotError
from fastdns.plugins.kubernetes import KubernetesPlugin
from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.plugins.kubernetes.source import SnapshotSource
from fastdns.records import A
from tests.k8s_support import endpoint, namespace, service, slice_, to_message

OBJS = [namespace("default"), service("nginx", ips=["10.96.0.10"], ports=[("http", 80, "TCP")]),
        slice_("nginx-1", "nginx", [endpoint("10.0.0.1")], ports=[("http", 80, "TCP")])]


def write(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@pytest.mark.parametrize("fmt", ["yaml-list", "yaml-stream", "json-list"])
def test_formats(tmp_path, fmt):
    p = tmp_path / "cluster"
    if fmt == "yaml-list":
        write(p, yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": OBJS}))
    elif fmt == "yaml-stream":
        write(p, yaml.safe_dump_all(OBJS))
    else:
        write(p, json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJS}, indent=2))
    idx = SnapshotSource(str(p)).load()
    assert set(idx.services) == {("default", "nginx")}
    assert set(idx.slices) == {("default", "nginx-1")}
    assert set(idx.namespaces) == {"default"}


def test_typed_list_implies_item_kind(tmp_path):
    p = tmp_path / "svc.yaml"
    items = [{k: v for k, v in OBJS[1].items() if k != "kind"}]
    write(p, yaml.safe_dump({"kind": "ServiceList", "items": items}))
    assert ("default", "nginx") in SnapshotSource(str(p)).load().services


def test_missing_field_names_the_object(tmp_path):
    p = tmp_path / "bad.yaml"
    bad = slice_("broken", "nginx", [{"conditions": {"ready": True}}])
    write(p, yaml.safe_dump_all([namespace("default"), bad]))
    with pytest.raises(SnapshotError) as e:
        SnapshotSource(str(p)).load()
    msg = str(e.value)
    assert str(p) in msg and "EndpointSlice default/broken" in msg and "addresses" in msg


def test_broken_file_keeps_last_good_state_then_recovers(tmp_path, caplog):
    p = tmp_path / "cluster.yaml"
    write(p, yaml.safe_dump_all(OBJS))
    deltas = []
    plugin = KubernetesPlugin(KubernetesConf(zones=("cluster.local.",), snapshot=str(p)),
                              deltas.append, poll_interval=3600)
    plugin.start()
    try:
        name = "nginx.default.svc.cluster.local."
        assert plugin.synced and name in plugin.answers()
        write(p, "kind: List\nitems: [ {unclosed")
        with caplog.at_level(logging.ERROR):
            assert plugin.poll_now() is False
        assert "invalid YAML" in caplog.text and str(p) in caplog.text
        assert name in plugin.answers() and len(deltas) == 1
        # fixed file with a change: one delta with exactly the affected names
        objs = OBJS[:2] + [slice_("nginx-1", "nginx", [endpoint("10.0.0.1", hostname="a"),
                                                      endpoint("10.0.0.2")],
                                  ports=[("http", 80, "TCP")])]
        write(p, yaml.safe_dump_all(objs))
        assert plugin.poll_now() is True
        d = deltas[-1]
        assert "10-0-0-2.nginx.default.svc.cluster.local." in d.upserts
        assert "a.nginx.default.svc.cluster.local." in d.upserts
        assert "10-0-0-1.nginx.default.svc.cluster.local." in d.deletes
        assert name not in d.upserts  # the ClusterIP answers did not change
        ans = plugin.answers()[name][A]
        assert [rd.address for rd in to_message(name, A, ans).answer[0]] == ["10.96.0.10"]
    finally:
        plugin.stop()


def test_symlink_swap_is_noticed(tmp_path):
    a, b, link = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "cluster.yaml"
    write(a, yaml.safe_dump_all(OBJS))
    write(b, yaml.safe_dump_all(OBJS + [service("extra", ips=["10.96.0.99"])]))
    os.symlink(a, link)
    src = SnapshotSource(str(link))
    index = src.load()
    assert src.poll(index) is None
    tmp = tmp_path / "new-link"
    os.symlink(b, tmp)
    os.replace(tmp, link)
    events = src.poll(index)
    assert [(e.type, e.obj.key) for e in events] == [("ADDED", ("default", "extra"))]
    assert src.poll(index) is None                # read once per change


def test_unknown_kind_is_skipped_with_a_warning(tmp_path, caplog):
    p = tmp_path / "c.yaml"
    write(p, yaml.safe_dump_all(OBJS + [{"kind": "Deployment", "metadata": {
        "name": "web", "namespace": "default"}}]))
    with caplog.at_level(logging.WARNING):
        idx = SnapshotSource(str(p)).load()
    assert "Deployment default/web" in caplog.text
    assert ("default", "nginx") in idx.services


def test_namespace_labels_select_namespaces_in_a_snapshot(tmp_path):
    """`namespace_labels` (CoreDNS): only Services in matching Namespaces are exposed;
    relabelling a Namespace in the file exposes or hides its Services."""
    def cluster(team_b):
        a = namespace("a")
        a["metadata"]["labels"] = {"team": "x"}
        b = namespace("b")
        b["metadata"]["labels"] = {"team": team_b}
        return [a, b, service("web", "a", ips=["10.96.1.1"]), service("web", "b", ips=["10.96.1.2"])]

    p = tmp_path / "cluster.yaml"
    write(p, yaml.safe_dump_all(cluster("y")))
    conf = KubernetesConf(zones=("cluster.local.",), snapshot=str(p), namespace_labels="team=x")
    plugin = KubernetesPlugin(conf, lambda d: None)
    plugin.start()
    try:
        names = plugin.answers()
        assert "web.a.svc.cluster.local." in names and "web.b.svc.cluster.local." not in names
        write(p, yaml.safe_dump_all(cluster("x")))
        assert plugin.poll_now()
        assert "web.b.svc.cluster.local." in plugin.answers()
    finally:
        plugin.stop()


def test_a_snapshot_that_is_not_a_regular_file_or_too_big_is_refused(tmp_path, monkeypatch):
    """/dev/zero, or more than SNAPSHOT_FILE_MAX bytes: a SnapshotError naming the
    file and the limit, read no further (a 500 MB file took the coordinator to 2.4 GB)."""
    import fastdns.plugins.kubernetes.source as src

    with pytest.raises(SnapshotError) as e:
        SnapshotSource("/dev/zero").load()
    assert str(e.value) == "/dev/zero: cannot read snapshot: not a regular file"
    p = tmp_path / "cluster.yaml"
    write(p, yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": OBJS}))
    monkeypatch.setattr(src, "SNAPSHOT_FILE_MAX", os.path.getsize(p) - 1)   # a small limit
    with pytest.raises(SnapshotError) as e:
        SnapshotSource(str(p)).load()
    assert f"larger than the {os.path.getsize(p) - 1} bytes" in str(e.value)
    monkeypatch.setattr(src, "SNAPSHOT_FILE_MAX", os.path.getsize(p))
    assert SnapshotSource(str(p)).load() is not None
