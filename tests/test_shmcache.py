"""The shared-memory answer cache, one process at a time: keys, expiry,
serve-stale, size classes, collisions, counters, naming and cleanup.

Multi-process behaviour (fork/spawn, concurrent writers, killed writers) is
in test_shmcache_procs.py.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory

import dns.name
import pytest

from fastdns._shmcache import SharedCache, lower_key, now
from fastdns.errors import ServerError


def wire(name: str) -> bytes:
    """A name in wire format, case kept (dnspython as the encoder)."""
    return dns.name.from_text(name).to_wire()


@pytest.fixture
def name() -> Iterator[str]:
    n = f"/fastdns-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield n
    SharedCache.unlink_name(n)


@pytest.fixture
def cache(name: str) -> Iterator[SharedCache]:
    c = SharedCache.create(name, 1024)
    yield c
    c.close()


def test_put_get_roundtrip_and_key_fields(cache: SharedCache) -> None:
    k = wire("www.example.com.")
    assert cache.get(k, 1) is None
    assert cache.put(k, 1, 1, False, b"A-answer", 30)
    assert cache.put(k, 28, 1, False, b"AAAA-answer", 30)
    assert cache.put(k, 1, 1, True, b"A-answer-with-DO", 30, kind="success")
    assert cache.put(k, 1, 3, False, b"CH-answer", 30, kind=1)
    e = cache.get(k, 1)
    assert e is not None and e.value == b"A-answer" and e.kind == "success" and not e.stale
    assert cache.get(k, 28).value == b"AAAA-answer"
    assert cache.get(k, 1, 1, True).value == b"A-answer-with-DO"
    e = cache.get(k, 1, 3)
    assert e.value == b"CH-answer" and e.kind == "denial"
    assert cache.get(k, 16) is None
    assert cache.get(wire("www.example.org."), 1) is None
    # a new value for the same key replaces the old one, in place
    assert cache.put(k, 1, 1, False, b"A-answer-2", 30)
    assert cache.get(k, 1).value == b"A-answer-2"
    assert cache.entries() == {"success": 3, "denial": 1, "servfail": 0}


def test_key_bytes_are_compared_exactly_and_lower_key_matches_dnspython(cache: SharedCache) -> None:
    mixed = wire("WwW.ExAmPlE.CoM.")
    lower = wire("www.example.com.")
    cache.put(lower, 1, 1, False, b"v", 30)
    # the cache does not fold case: callers give lower-cased keys
    assert cache.get(mixed, 1) is None
    assert lower_key(mixed) == lower
    assert lower_key(mixed) == dns.name.from_text("WwW.ExAmPlE.CoM.").canonicalize().to_wire()
    assert cache.get(lower_key(mixed), 1).value == b"v"
    # label length octets and non-letters are untouched (a 90-byte label: 'Z' is 90)
    odd = bytes([5]) + b"A-Z@[" + bytes([63]) + b"Q" * 63 + b"\x00"
    assert lower_key(odd) == bytes([5]) + b"a-z@[" + bytes([63]) + b"q" * 63 + b"\x00"


def test_bad_arguments_are_refused(cache: SharedCache, name: str) -> None:
    with pytest.raises(ValueError):
        cache.put(b"", 1, 1, False, b"v", 30)
    with pytest.raises(ValueError):
        cache.put(b"x" * 256, 1, 1, False, b"v", 30)
    with pytest.raises(ValueError):
        cache.put(b"\x00", 1, 1, False, b"v", 30, kind="bogus")
    with pytest.raises(ValueError):
        cache.put(b"\x00", 1, 1, False, b"v", -1)
    with pytest.raises(ValueError):
        SharedCache.create("no-slash", 10)
    with pytest.raises(ValueError):
        SharedCache.create("/a/b", 10)
    with pytest.raises(ValueError):
        cache.worker_slot(cache.counter_rows)
    with pytest.raises(ServerError, match="cannot create"):
        SharedCache.create(name, 10)            # exists already
    assert cache.put(b"x" * 255, 1, 1, False, b"v", 30)
    assert cache.get(b"x" * 255, 1).value == b"v"


def test_expiry_and_serve_stale_window(cache: SharedCache) -> None:
    k = wire("ttl.example.")
    t0 = 100_000
    cache.put(k, 1, 1, False, b"v", 30, now=t0)
    e = cache.get(k, 1, now=t0)
    assert e.inserted == t0 and e.ttl == 30
    assert cache.get(k, 1, now=t0 + 29) is not None
    assert cache.get(k, 1, now=t0 + 30) is None                     # expires at inserted + ttl
    e = cache.get(k, 1, now=t0 + 35, stale_window=10)
    assert e is not None and e.stale and e.value == b"v"
    assert cache.get(k, 1, now=t0 + 40, stale_window=10) is None
    s = cache.stats()
    assert s["hits"]["success"] == 2 and s["stale_hits"]["success"] == 1 and s["misses"] == 2
    # ttl 0: never fresh, but still there for serve-stale
    cache.put(k, 28, 1, False, b"z", 0, now=t0)
    assert cache.get(k, 28, now=t0) is None
    assert cache.get(k, 28, now=t0 + 1, stale_window=5).stale


def test_default_clock_is_monotonic_seconds(cache: SharedCache) -> None:
    k = wire("clock.example.")
    before = now()
    cache.put(k, 1, 1, False, b"v", 60)
    e = cache.get(k, 1)
    assert before <= e.inserted <= now()
    # CLOCK_MONOTONIC, the clock every process on the machine shares
    assert abs(e.inserted - int(__import__("time").monotonic())) <= 1


def test_size_classes_and_too_big(cache: SharedCache) -> None:
    small, large = cache.layout()
    assert small["data_cap"] == 576 and large["data_cap"] >= 255 + 4096
    k = wire("big.example.")
    v_small = bytes(range(256)) * 2                         # 512 bytes
    v_large = os.urandom(4096)
    assert cache.put(k, 1, 1, False, v_small, 30)
    assert cache.get(k, 1).value == v_small
    assert cache.put(k, 1, 1, False, v_large, 30)           # moves to the large class
    assert cache.get(k, 1).value == v_large
    assert cache.put(k, 1, 1, False, b"short again", 30)    # and back
    assert cache.get(k, 1).value == b"short again"
    assert cache.delete(k, 1) == 1                          # only one copy was left
    assert cache.get(k, 1) is None
    assert not cache.put(k, 1, 1, False, b"x" * (large["data_cap"] - len(k) + 1), 30)
    assert cache.put(k, 1, 1, False, b"x" * (large["data_cap"] - len(k)), 30)
    assert cache.stats()["too_big"] == 1
    assert cache.entries() == {"success": 1, "denial": 0, "servfail": 0}


def test_colliding_keys_evict_only_within_their_bucket(name: str) -> None:
    cache = SharedCache.create(name, 1024, large_capacity=0)
    try:
        ways = cache.layout()[0]["ways"]
        keys = [wire(f"n{i}.flood.example.") for i in range(6000)]
        by_bucket: dict[int, list[bytes]] = {}
        for k in keys:
            by_bucket.setdefault(cache._bucket_of(k, 1)[0], []).append(k)
        target, flood = max(by_bucket.items(), key=lambda kv: len(kv[1]))
        assert len(flood) > 2 * ways
        others = [ks[0] for b, ks in by_bucket.items() if b != target][:200]
        t0 = 1000
        for i, k in enumerate(others):
            assert cache.put(k, 1, 1, False, b"keep%d" % i, 300, now=t0)
        for i, k in enumerate(flood):
            # later keys expire later, so each insert evicts the oldest
            assert cache.put(k, 1, 1, False, b"flood%d" % i, 300 + i, now=t0)
        present = [k for k in flood if cache.get(k, 1, now=t0) is not None]
        assert present == flood[-ways:]
        for i, k in enumerate(others):
            assert cache.get(k, 1, now=t0).value == b"keep%d" % i
        s = cache.stats()
        assert s["evictions"]["success"] == len(flood) - ways
        assert s["entries"]["success"] == len(others) + ways == cache.entries()["success"]
    finally:
        cache.close()


def test_replacement_prefers_free_then_expired_then_soonest_expiring(name: str) -> None:
    cache = SharedCache.create(name, 8, ways=4, large_capacity=0)   # 2 buckets of 4
    try:
        keys = [wire(f"r{i}.example.") for i in range(400)]
        b0 = [k for k in keys if cache._bucket_of(k, 1)[0] == 0][:6]
        t0 = 5000
        ttls = [100, 10, 200, 50]
        for k, ttl in zip(b0, ttls):
            assert cache.put(k, 1, 1, False, k, ttl, now=t0)
        # all live: the one expiring first (ttl 10) goes
        cache.put(b0[4], 1, 1, False, b0[4], 500, now=t0)
        assert cache.get(b0[1], 1, now=t0) is None
        assert all(cache.get(k, 1, now=t0) for k in (b0[0], b0[2], b0[3], b0[4]))
        assert cache.stats()["evictions"]["success"] == 1
        # at t0+60 the ttl-50 entry has expired: it goes, and is no eviction
        cache.put(b0[5], 1, 1, False, b0[5], 500, now=t0 + 60)
        assert cache.get(b0[3], 1, now=t0, stale_window=1000) is None
        assert all(cache.get(k, 1, now=t0 + 60) for k in (b0[0], b0[2], b0[4], b0[5]))
        assert cache.stats()["evictions"]["success"] == 1
    finally:
        cache.close()


def test_seed_is_random_per_segment(name: str) -> None:
    other = name + "-b"
    a = SharedCache.create(name, 4096)
    b = SharedCache.create(other, 4096)
    try:
        assert a.seed != b.seed
        keys = [wire(f"s{i}.example.") for i in range(64)]
        assert [a._bucket_of(k, 1) for k in keys] != [b._bucket_of(k, 1) for k in keys]
        # the seed lives in the segment: an attached view hashes the same way
        c = SharedCache.attach(name)
        assert c.seed == a.seed
        assert [c._bucket_of(k, 1) for k in keys] == [a._bucket_of(k, 1) for k in keys]
        c.close()
    finally:
        a.close()
        b.close()
        SharedCache.unlink_name(other)


def test_counters_are_per_worker_row(cache: SharedCache, name: str) -> None:
    w1 = SharedCache.attach(name)
    w2 = SharedCache.attach(name)
    try:
        w1.worker_slot(1)
        w2.worker_slot(2)
        k = wire("count.example.")
        w1.put(k, 1, 1, False, b"v", 30)
        w2.put(wire("nx.example."), 1, 1, False, b"nx", 30, kind="denial")
        for _ in range(3):
            w2.get(k, 1)
        w1.get(wire("absent.example."), 1)
        assert w1.stats(row=1)["inserts"]["success"] == 1 and w1.stats(row=1)["misses"] == 1
        assert w1.stats(row=2)["hits"]["success"] == 3
        assert w1.stats(row=2)["inserts"]["denial"] == 1
        assert w1.stats(row=0)["hits"]["success"] == 0
        total = cache.stats()
        assert total["hits"]["success"] == 3 and total["misses"] == 1
        assert total["entries"] == {"success": 1, "denial": 1, "servfail": 0}
        assert cache.get(k, 1).hits == 4            # per-entry hit count, for prefetch
    finally:
        w1.close()
        w2.close()


def test_unlink_leaves_nothing_in_dev_shm(name: str) -> None:
    c = SharedCache.create(name, 100)
    path = "/dev/shm" + name
    assert os.path.exists(path) and os.path.getsize(path) == c.size
    assert c.unlink()
    assert not os.path.exists(path)
    assert SharedCache.unlink_name(name) is False
    # the mapping stays usable until closed
    assert c.put(b"\x00", 2, 1, False, b"root", 30) and c.get(b"\x00", 2).value == b"root"
    c.close()
    assert c.closed
    with pytest.raises(ValueError, match="closed"):
        c.get(b"\x00", 2)
    with pytest.raises(ServerError, match="cannot open"):
        SharedCache.attach(name)


def test_attach_refuses_a_segment_that_is_not_a_cache(name: str) -> None:
    seg = shared_memory.SharedMemory(name=name.lstrip("/"), create=True, size=1 << 16)
    try:
        seg.buf[:8] = b"garbage!"
        with pytest.raises(ServerError, match="not a usable fastdns cache"):
            SharedCache.attach(name)
    finally:
        seg.close()
        seg.unlink()


def test_attach_refuses_a_header_pointing_outside_the_segment(cache: SharedCache, name: str) -> None:
    # corrupt a table offset in the header through a second, raw mapping
    import mmap
    fd = os.open("/dev/shm" + name, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 4096)
        # ShmHeader: tables[0].tag_off sits after 72 bytes of fixed fields
        saved = m[72:80]
        m[72:80] = (cache.size * 2).to_bytes(8, "little")
        with pytest.raises(ServerError, match="outside the segment"):
            SharedCache.attach(name)
        m[72:80] = saved
        SharedCache.attach(name).close()
        m.close()
    finally:
        os.close(fd)
