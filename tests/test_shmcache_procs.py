"""The shared-memory cache across real processes: forked and spawned
workers, concurrent writers and readers on one bucket, and writers killed or
frozen in the middle of a write."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import struct
import time
import uuid
import zlib
from collections.abc import Iterator

import pytest

from fastdns._shmcache import SharedCache

KEY = b"\x03www\x07example\x03com\x00"


@pytest.fixture
def name() -> Iterator[str]:
    n = f"/fastdns-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield n
    SharedCache.unlink_name(n)


class Procs:
    """Child processes that are always reaped, killed if need be."""

    def __init__(self) -> None:
        self.procs: list[mp.process.BaseProcess] = []

    def start(self, ctx: str, target, *args) -> mp.process.BaseProcess:
        p = mp.get_context(ctx).Process(target=target, args=args, daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(5)


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.close()


# -- child bodies (module level: spawn imports them) --------------------------

def child_put_then_get(name: str, row: int, q) -> None:
    c = SharedCache.attach(name)
    c.worker_slot(row)
    c.put(b"\x05child\x00", 1, 1, False, b"from-%d" % os.getpid(), 60)
    e = c.get(KEY, 1)
    q.put((os.getpid(), e.value if e else None))
    c.close()


def child_put_and_hang(name: str, value: bytes, hang_ms: int) -> None:
    c = SharedCache.attach(name)
    c.worker_slot(3)
    c._test_put_and_hang(KEY, 1, 1, False, value, 60, hang_ms)


def checked_value(key: bytes, writer: int, n: int, size: int) -> bytes:
    """A value that proves its own integrity: key, writer, counter, body, crc."""
    body = (struct.pack("!HI", writer, n) * (size // 6 + 1))[:size]
    head = struct.pack("!BHII", len(key), writer, n, size) + key
    return head + body + struct.pack("!I", zlib.crc32(head + body))


def check_value(key: bytes, v: bytes) -> bool:
    if len(v) < 15 or zlib.crc32(v[:-4]) != struct.unpack("!I", v[-4:])[0]:
        return False
    klen, _writer, _n, size = struct.unpack("!BHII", v[:11])
    return v[11:11 + klen] == key and len(v) == 11 + klen + size + 4


#: operations every writer stores / every reader hits at least (besides running ``seconds``):
#: a count, so a slow machine makes the run longer, never a failure
MIN_OPS = 2000


def child_writer(name: str, keys: list[bytes], writer: int, seconds: float, q,
                 min_stored: int = 0) -> None:
    c = SharedCache.attach(name)
    c.worker_slot(writer)
    n = stored = 0
    end = time.monotonic() + seconds
    sizes = (40, 300, 500, 2000, 4000)              # both size classes
    while time.monotonic() < end or stored < min_stored:
        k = keys[n % len(keys)]
        stored += c.put(k, 1, 1, False, checked_value(k, writer, n, sizes[n % 5]), 60)
        n += 1
    q.put(("w", writer, n, stored))


def child_reader(name: str, keys: list[bytes], reader: int, seconds: float, q,
                 min_hits: int = 0) -> None:
    c = SharedCache.attach(name)
    c.worker_slot(reader)
    hits = torn = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end or hits < min_hits:
        k = keys[i % len(keys)]
        e = c.get(k, 1)
        if e is not None:
            hits += 1
            torn += not check_value(k, e.value)
        i += 1
    q.put(("r", reader, hits, torn))


# -- tests ---------------------------------------------------------------------

@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_hits_across_processes(name: str, procs: Procs, ctx: str) -> None:
    cache = SharedCache.create(name, 1024)
    try:
        cache.put(KEY, 1, 1, False, b"from-parent", 60)
        q = mp.get_context(ctx).Queue()
        kids = [procs.start(ctx, child_put_then_get, name, row, q) for row in (1, 2)]
        got = dict(q.get(timeout=30) for _ in kids)
        for p in kids:
            p.join(10)
            assert p.exitcode == 0
        assert got == {p.pid: b"from-parent" for p in kids}
        # the children's puts are seen here; the last one wins
        v = cache.get(b"\x05child\x00", 1).value
        assert v in {b"from-%d" % p.pid for p in kids}
        s = cache.stats()
        assert s["hits"]["success"] == 3 and s["inserts"]["success"] == 3
        assert cache.stats(row=1)["hits"]["success"] == 1
        assert cache.stats(row=2)["hits"]["success"] == 1
    finally:
        cache.close()


def test_a_forked_child_uses_the_inherited_mapping(name: str, procs: Procs) -> None:
    cache = SharedCache.create(name, 1024)
    try:
        def child(q) -> None:                       # fork only: a closure is fine
            cache.worker_slot(5)
            cache.put(b"\x04fork\x00", 1, 1, False, b"inherited", 60)
            q.put(cache.get(KEY, 1).value)
        cache.put(KEY, 1, 1, False, b"parent", 60)
        q = mp.get_context("fork").Queue()
        p = procs.start("fork", child, q)
        assert q.get(timeout=10) == b"parent"
        p.join(10)
        assert cache.get(b"\x04fork\x00", 1).value == b"inherited"
    finally:
        cache.close()


def test_concurrent_writers_and_readers_on_one_bucket_never_tear(name: str, procs: Procs) -> None:
    # 2 buckets of 8 small slots, 1 bucket of 8 large ones; 12 keys: the
    # writers keep evicting each other while the readers copy
    cache = SharedCache.create(name, 24, ways=8, large_capacity=8)
    try:
        keys = [b"\x02k%d\x00" % i for i in range(40)]
        small0 = [k for k in keys if cache._bucket_of(k, 1)[0] == 0][:12]
        assert len(small0) == 12
        seconds = 2.0
        q = mp.get_context("fork").Queue()
        for w in (1, 2):
            procs.start("fork", child_writer, name, small0, w, seconds, q, MIN_OPS)
        for r in (3, 4):
            procs.start("fork", child_reader, name, small0, r, seconds, q, MIN_OPS)
        results = [q.get(timeout=120) for _ in range(4)]
        writers = [r for r in results if r[0] == "w"]
        readers = [r for r in results if r[0] == "r"]
        assert sum(r[3] for r in readers) == 0, f"torn values read: {readers}"
        assert all(r[2] >= MIN_OPS for r in readers), readers     # they did read
        assert all(w[3] >= MIN_OPS for w in writers), writers
        s = cache.stats()
        assert s["evictions"]["success"] > 0
        # every entry left is whole
        for k in small0:
            e = cache.get(k, 1)
            assert e is None or check_value(k, e.value)
        print("stats:", s)
    finally:
        cache.close()


def wait_for(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def _hung_writer(cache: SharedCache, name: str, procs: Procs) -> tuple[mp.process.BaseProcess, float]:
    """A child that locks KEY's slot and hangs half-way through writing it; returns it
    and a time before it took the lock."""
    started = time.monotonic()
    p = procs.start("fork", child_put_and_hang, name, b"N" * 400, 60_000)
    # the write is in progress once the old value stops being readable
    wait_for(lambda: cache.get(KEY, 1) is None)
    return p, started


def test_writer_killed_mid_write_never_wedges(name: str, procs: Procs) -> None:
    neighbours = [b"\x02n%d\x00" % i for i in range(5)]
    names = []
    try:
        # a lock less than a second old is never taken over: a machine too busy to make
        # the first put within that second cannot show it, and the test starts again
        for attempt in range(5):
            names.append(f"{name}-{attempt}")
            cache = SharedCache.create(names[-1], 1024)
            cache.put(KEY, 1, 1, False, b"old", 60)
            for k in neighbours:
                cache.put(k, 1, 1, False, k, 60)
            p, started = _hung_writer(cache, names[-1], procs)
            # a live writer holds the slot: another writer gives up (it does not wait
            # for the lock: one that waited would take it over a second later, and store)
            stored = cache.put(KEY, 1, 1, False, b"new", 60)
            if time.monotonic() - started < 1.0:
                break
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            cache.close()
        else:
            pytest.fail("5 times the put came more than a second after the writer started")
        try:
            assert not stored
            s = cache.stats()
            assert s["busy"] == 1 and s["steals"] == 0
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            assert p.exitcode == -signal.SIGKILL
            # readers: a miss, at once (no retry of the half-written slot), for ever; the
            # rest of the bucket is fine
            before = cache.stats()
            for _ in range(1000):
                assert cache.get(KEY, 1) is None
            s = cache.stats()
            assert s["misses"] - before["misses"] == 1000 and s["retries"] == before["retries"]
            for k in neighbours:
                assert cache.get(k, 1).value == k
            # writers: the dead writer's lock is taken over at once
            assert cache.put(KEY, 1, 1, False, b"new", 60)
            assert cache.get(KEY, 1).value == b"new"
            s = cache.stats()
            assert s["steals"] == 1 and s["busy"] == 1
            assert cache.entries()["success"] == 6
        finally:
            cache.close()
    finally:
        for n in names:
            SharedCache.unlink_name(n)


def test_writer_frozen_mid_write_is_taken_over_after_a_second(name: str, procs: Procs) -> None:
    cache = SharedCache.create(name, 1024)
    try:
        cache.put(KEY, 1, 1, False, b"old", 60)
        p, started = _hung_writer(cache, name, procs)
        stored = cache.put(KEY, 1, 1, False, b"new", 60)
        # owner alive, lock fresh (less than a second old): not taken over
        assert not stored or time.monotonic() - started >= 1.0
        wait_for(lambda: cache.put(KEY, 1, 1, False, b"new", 60), timeout=30)
        assert time.monotonic() - started >= 1.0          # not before the second is up
        assert p.is_alive()
        assert cache.get(KEY, 1).value == b"new"
        assert cache.stats()["steals"] == 1
    finally:
        cache.close()


def test_writers_killed_at_random_points_leave_whole_entries(name: str, procs: Procs) -> None:
    cache = SharedCache.create(name, 24, ways=8, large_capacity=8)
    try:
        keys = [b"\x02k%d\x00" % i for i in range(40)]
        bucket = [k for k in keys if cache._bucket_of(k, 1)[0] == 0][:10]
        q = mp.get_context("fork").Queue()
        for round_ in range(6):
            inserts = sum(cache.stats()["inserts"].values())
            p = procs.start("fork", child_writer, name, bucket, 1 + round_ % 2, 30.0, q)
            # killed while it writes: once it has stored something, a little later each round
            wait_for(lambda n=inserts: sum(cache.stats()["inserts"].values()) > n, timeout=30)
            time.sleep(0.01 * round_)
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
            for k in bucket:                    # whatever is readable is whole
                e = cache.get(k, 1)
                assert e is None or check_value(k, e.value)
        # nothing is wedged: every key can be written and read back
        for k in bucket:
            v = checked_value(k, 9, 0, 100)
            assert cache.put(k, 1, 1, False, v, 60)
            assert cache.get(k, 1).value == v
    finally:
        cache.close()


def test_a_cache_pickles_as_an_attachment_by_name(name: str) -> None:
    import pickle
    cache = SharedCache.create(name, 64)
    try:
        other = pickle.loads(pickle.dumps(cache))
        assert other.name == name and other.seed == cache.seed
        other.put(KEY, 1, 1, False, b"via-pickle", 60)
        assert cache.get(KEY, 1).value == b"via-pickle"
        other.close()
    finally:
        cache.close()
