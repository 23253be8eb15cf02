"""fastdns._packed.PackedStore: the coordinator's arena store of packed entries.

Checked against a plain dict fed the same operations (the model), through
enough churn that compaction runs many times, and its dump stream against
AnswerTable.load_packed and the workers' per-entry path.
"""

from __future__ import annotations

import random

import pytest

from fastdns import wire
from fastdns._answers import AnswerTable
from fastdns._packed import PackedStore, iter_records
from fastdns.compiled import expand


def key(i: int) -> bytes:
    return wire.name_from_text(f"n{i}.svc.cluster.local.")


def check_equal(store: PackedStore, model: dict[bytes, bytes]) -> None:
    assert len(store) == len(model)
    assert dict(store.items()) == model
    for k, v in model.items():
        assert store.get(k) == v and store[k] == v and k in store
    assert sorted(store) == sorted(model)
    assert dict(iter_records(store.dump())) == model


def test_random_operations_follow_a_dict_through_compactions() -> None:
    rng = random.Random(7)
    store, model = PackedStore(), {}
    compactions = 0
    last_garbage = 0
    for step in range(40_000):
        k = key(rng.randrange(3000))
        if rng.random() < 0.2:
            assert store.discard(k) == (model.pop(k, None) is not None)
        else:
            # sizes vary so that replaces both fit in place and move
            v = bytes([rng.randrange(256)]) * rng.choice((8, 8, 40, 300, 2000))
            assert store.put(k, v) == (model.get(k) != v)
            model[k] = v
        g = store.memory["garbage"]
        if g < last_garbage:
            compactions += 1
        last_garbage = g
        if step % 5000 == 0:
            check_equal(store, model)
    check_equal(store, model)
    assert compactions >= 3
    mem = store.memory
    assert mem["garbage"] * 8 <= max(mem["live"] + mem["garbage"], 8 << 20)


def test_unchanged_put_is_reported_and_costs_nothing() -> None:
    store = PackedStore()
    assert store.put(b"\x01a\x00", b"abc") is True
    before = store.memory
    assert store.put(b"\x01a\x00", b"abc") is False
    assert store.memory == before
    assert store.put(b"\x01a\x00", b"abd") is True          # same size: rewritten in place
    assert store.memory["garbage"] == 0
    assert store.put(b"\x01a\x00", b"abcd") is True         # new size: old record is garbage
    assert store.memory["garbage"] == 5 + 3 + 3


def test_bad_keys_and_lookups() -> None:
    store = PackedStore()
    with pytest.raises(ValueError):
        store.put(b"", b"x")
    with pytest.raises(ValueError):
        store.put(b"x" * 256, b"x")
    with pytest.raises(TypeError):
        store.put(None, b"x")  # type: ignore[arg-type]
    assert store.get("text") is None and store.get(b"") is None and "x" not in store
    with pytest.raises(KeyError):
        store[b"\x01a\x00"]
    assert store.discard(b"\x01a\x00") is False and store.discard(b"") is False


def test_iteration_notices_a_change() -> None:
    store = PackedStore()
    for i in range(10):
        store.put(key(i), b"v")
    it = iter(store)
    next(it)
    store.put(key(99), b"v")
    with pytest.raises(RuntimeError):
        list(it)


def test_clear_and_mapping_equality() -> None:
    store = PackedStore()
    for i in range(100):
        store.put(key(i), bytes([i]))
    assert store == {key(i): bytes([i]) for i in range(100)}
    store.clear()
    assert len(store) == 0 and list(store) == [] and store.dump() == b""
    store.put(key(1), b"x")
    assert dict(store.items()) == {key(1): b"x"}


def test_malformed_streams_are_refused() -> None:
    good = PackedStore()
    good.put(b"\x01a\x00", b"\x01\x00\x00\x01\xff\xff")
    blob = good.dump()
    for bad in (blob[:-1], blob[:3], b"\x00" + blob[1:], blob + b"\x01"):
        with pytest.raises(ValueError):
            list(iter_records(bad))
        with pytest.raises(ValueError):
            AnswerTable().load_packed(bad, [(b"nd", b"nx")])


def test_load_packed_equals_set_packed() -> None:
    """A worker loading the dump stream ends with the same table as one fed entry by entry."""
    from fastdns.plugins.kubernetes.conf import KubernetesConf
    from fastdns.plugins.kubernetes.compile import ZoneCompiler
    from fastdns.plugins.kubernetes.index import ClusterIndex
    from fastdns.plugins.kubernetes.objects import decode_object

    objs = [decode_object("Namespace", {"metadata": {"name": "default"}}),
            decode_object("Service", {"metadata": {"name": "web", "namespace": "default"},
                                      "spec": {"clusterIP": "10.0.0.5", "ports": [
                                          {"name": "http", "port": 80, "protocol": "TCP"}]}}),
            decode_object("EndpointSlice", {
                "metadata": {"name": "web-x", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.1.0.7"], "hostname": "a"}]})]
    comp = ZoneCompiler(KubernetesConf())
    comp.full(ClusterIndex.from_objects(objs))
    store = PackedStore()
    for k, v in comp.entries.items():
        store.put(k, v)
    shared = [tuple(p) for p in comp.encoder.shared]
    one, bulk, copied = AnswerTable(), AnswerTable(), AnswerTable()
    one.set_shared(shared)
    for k, v in comp.entries.items():
        one.set_packed(k, v)
        copied.set(k, [tuple(b) for b in expand(v, shared)])   # zone bodies copied
    assert bulk.load_packed(store.dump(), shared) == len(comp.entries) == len(one)
    for k in comp.entries:
        for qtype in (1, 28, 33, 12, 16, 99):
            assert bulk.get(k, qtype) == one.get(k, qtype) == copied.get(k, qtype)
    # the zone's NODATA body is held once, not per name
    assert bulk.memory < copied.memory - (len(comp.entries) - 10) * len(shared[0][0])


def test_shared_zone_bodies_are_referenced_not_copied() -> None:
    entry = b"\x02\x00" + b"\x00\x00\xff\xff" + b"\x00\x10\xff\xfe"   # qtype 0 → NODATA, TXT → NXDOMAIN
    t = AnswerTable()
    with pytest.raises(ValueError, match="unknown zone"):
        t.set_packed(b"\x01a\x00", entry)                       # no zone bodies registered
    with pytest.raises(ValueError, match="unknown zone"):
        t.load_packed(_record(b"\x01a\x00", b"\x02\x01" + entry[2:]), [(b"nd0", b"nx0")])
    t.set_packed(b"\x01a\x00", entry)
    assert t.get(b"\x01a\x00", 1) == ("other", b"nd0")
    assert t.get(b"\x01a\x00", 16) == ("exact", b"nx0")
    t.set_shared([(b"ND-new", b"NX-new")])          # a new zone body: every name sees it
    assert t.get(b"\x01a\x00", 1) == ("other", b"ND-new")
    with pytest.raises(ValueError, match="replaced, not removed"):
        t.set_shared([])
    t.delete(b"\x01a\x00")
    assert t.get(b"\x01a\x00", 1) == (None, None)


def _record(key: bytes, entry: bytes) -> bytes:
    return bytes([len(key)]) + len(entry).to_bytes(4, "big") + key + entry
