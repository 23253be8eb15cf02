"""What the sources drop from decoded objects (objects.Compactor), and that it does not matter.

The rules table (test_k8s_rules.py) compiles every case through the
Compactor of its configuration; these tests pin what is dropped and shared.
"""

from __future__ import annotations

import copy

from fastdns.plugins.kubernetes.conf import KubernetesConf
from fastdns.plugins.kubernetes.index import ClusterIndex
from fastdns.plugins.kubernetes.objects import Compactor, decode_object
from fastdns.plugins.kubernetes.selector import selector_keys
from tests.k8s_support import endpoint, service, slice_


def _slice(**meta: object) -> dict:
    d = slice_("web-abc", "web", [endpoint("10.1.0.1", pod="web-0"),
                                  endpoint("10.1.0.2", pod="web-1", hostname="h")],
               "default", [("http", 80, "TCP")])
    d["metadata"].update(meta)
    return d


def test_default_conf_drops_labels_versions_and_target_refs() -> None:
    slim = Compactor.for_conf(KubernetesConf())
    raw = _slice(resourceVersion="42", labels={"kubernetes.io/service-name": "web", "app": "x"})
    sl = decode_object("EndpointSlice", raw, slim=slim)
    assert sl.metadata.resourceVersion == "" and sl.metadata.labels is None
    assert sl.service_key == ("default", "web")
    assert sl.endpoints is None and sl.packed is not None
    assert sl.entries() == [(True, ("10.1.0.1",), None, None), (True, ("10.1.0.2",), "h", None)]
    svc = decode_object("Service", service("web", "default", ["10.0.0.1"], [("http", 80, "TCP")],
                                           labels={"app": "x"}), slim=slim)
    assert svc.metadata.labels is None and svc.spec.clusterIP is svc.spec.clusterIPs[0]


def test_selector_keys_and_pod_names_are_kept() -> None:
    conf = KubernetesConf(labels="app in (x,y),!canary", endpoint_pod_names=True)
    assert selector_keys(conf.labels) == {"app", "canary"}
    slim = Compactor.for_conf(conf)
    raw = _slice(labels={"kubernetes.io/service-name": "web", "app": "x", "team": "t"})
    sl = decode_object("EndpointSlice", raw, slim=slim)
    assert sl.metadata.labels == {"app": "x"}
    assert sl.service_key == ("default", "web")
    assert [e[3] for e in sl.entries()] == ["web-0", "web-1"]
    index = ClusterIndex(conf.labels)
    assert index.matches(sl)
    other = decode_object("EndpointSlice", _slice(labels={"kubernetes.io/service-name": "web",
                                                          "app": "z"}), slim=slim)
    assert not index.matches(other)


def test_equal_parts_are_shared() -> None:
    slim = Compactor.for_conf(KubernetesConf())
    a = decode_object("EndpointSlice", _slice(), slim=slim)
    b = decode_object("EndpointSlice", _slice(), slim=slim)
    assert a == b and a is not b
    assert a.ports is b.ports
    assert a.metadata.namespace is b.metadata.namespace


def test_changes_dns_ignores_give_no_events() -> None:
    """A re-read where only a resourceVersion, an unread label or a targetRef changed
    is not a change: no event, nothing recompiled."""
    slim = Compactor.for_conf(KubernetesConf())
    raw = [service("web", "default", ["10.0.0.1"], [("http", 80, "TCP")]), _slice()]
    old = ClusterIndex.from_objects([decode_object(o["kind"], o, slim=slim) for o in raw])
    raw2 = copy.deepcopy(raw)
    raw2[0]["metadata"]["resourceVersion"] = "99"
    raw2[0]["metadata"]["labels"] = {"team": "t"}
    raw2[1]["endpoints"][0]["targetRef"]["name"] = "web-renamed"
    new = ClusterIndex.from_objects([decode_object(o["kind"], o, slim=slim) for o in raw2])
    assert old.diff(new) == []
    raw2[1]["endpoints"][0]["addresses"] = ["10.1.0.9"]
    new = ClusterIndex.from_objects([decode_object(o["kind"], o, slim=slim) for o in raw2])
    assert [e.type for e in old.diff(new)] == ["MODIFIED"]


def test_shared_cache_is_bounded() -> None:
    slim = Compactor()
    for i in range(Compactor.MAX_SHARED * 2 + 5):
        slim.share(("port", i))
    assert len(slim._shared) <= Compactor.MAX_SHARED


def test_packed_endpoints_keep_what_the_compiler_reads() -> None:
    """Every field combination survives packing; one that cannot be packed keeps its objects."""
    eps = [endpoint("10.1.0.1"), endpoint("10.1.0.2", ready=False),
           endpoint("10.1.0.3", ready=None, hostname="web-3", pod="p3"),
           endpoint("fd00::1", hostname="h" * 63, pod="p" * 253),
           {"addresses": ["10.1.0.5", "10.1.0.6"], "conditions": {"ready": True,
                                                               "serving": False}}]
    raw = slice_("web-abc", "web", eps, "default", [("http", 80, "TCP")])
    plain = decode_object("EndpointSlice", raw, slim=lambda o: o)
    for pod_names in (False, True):
        slim = Compactor(frozenset(), pod_names)
        packed = decode_object("EndpointSlice", raw, slim=slim)
        assert packed.endpoints is None
        want = [(r, a, h, p if pod_names else None) for r, a, h, p in plain.entries()]
        assert packed.entries() == want
    assert want[1][0] is False and want[2][0] is True and want[4][1] == ("10.1.0.5", "10.1.0.6")
    long_host = slice_("x", "web", [endpoint("10.1.0.9", hostname="h" * 300)])
    kept = decode_object("EndpointSlice", long_host, slim=Compactor(frozenset(), False))
    assert kept.packed is None and kept.entries() == [(True, ("10.1.0.9",), "h" * 300, None)]
