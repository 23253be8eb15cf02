# cython: language_level=3
"""The coordinator's compiled store in C: wire name → packed entry.

The compiler keeps one packed entry per name (fastdns.compiled)
for the whole cluster: 140k names for 10k Services and 50k endpoints.  As a
``dict[bytes, bytes]`` that costs two Python objects and a dict slot per name
(~100 bytes of overhead on ~200 bytes of data), so :class:`PackedStore` keeps
the records in one arena instead:

* a record is ``u8 klen, u32 elen (big-endian), key, entry``, appended to an
  mmap'd arena that grows with ``mremap`` (pages never written are never
  resident);
* an open-addressing table (linear probing, at most 3/4 full) of 8-byte
  slots ``(hash32 << 32) | (offset + 1)`` finds a name;
* a replaced or deleted record is flagged dead (the top bit of its elen) and
  counted as garbage; once garbage passes 1/8 of the arena (and 1 MiB) the
  live records slide down in place and the freed tail is handed back to the
  kernel, so memory follows the live data, not the history of changes;
* :meth:`PackedStore.dump` writes the live records back to back: that stream
  is what a snapshot carries to the workers, whose ``AnswerTable.load_packed``
  reads it in C (no per-name Python objects on either side).

It is a read-only :class:`collections.abc.Mapping` for readers (``get``,
``in``, iteration, ``items``); the compiler changes it with :meth:`put` and
:meth:`discard`.  Not thread-safe: the compiler's lock serialises it.
"""

from collections.abc import Mapping

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memmove

cdef extern from "sys/mman.h" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    void* mremap(void* old, size_t old_size, size_t new_size, int flags, ...)
    int madvise(void* addr, size_t length, int advice)
    void* MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MREMAP_MAYMOVE, MADV_DONTNEED

cdef enum:
    PAGE = 4096
    MIN_ARENA = 64 * 1024
    COMPACT_MIN = 1 << 20       # never compact for less garbage than this
    MAX_KEY = 255

cdef uint32_t DEAD = 0x80000000u
cdef size_t MAX_ARENA = 0xFFFFFFF0u     # offsets are u32


cdef inline uint64_t _hash(const uint8_t* key, size_t n) noexcept nogil:
    """FNV-1a, 64 bit."""
    cdef uint64_t h = 1469598103934665603ULL
    cdef size_t i
    for i in range(n):
        h ^= key[i]
        h *= 1099511628211ULL
    return h


cdef inline uint32_t _get32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _put32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef int packed_next(const uint8_t* buf, size_t n, size_t* off, const uint8_t** key,
                     size_t* klen, const uint8_t** entry, size_t* elen) noexcept nogil:
    """Read the record at ``off[0]`` and advance: 1, 0 at the end, -1 if it is
    malformed (truncated, an empty key, or flagged dead)."""
    cdef size_t o = off[0], kl, el
    if o == n:
        return 0
    if n - o < REC_HDR:
        return -1
    kl = buf[o]
    el = _get32(buf + o + 1)
    if kl == 0 or el & DEAD or n - o - REC_HDR < kl + el:
        return -1
    key[0] = buf + o + REC_HDR
    klen[0] = kl
    entry[0] = buf + o + REC_HDR + kl
    elen[0] = el
    off[0] = o + REC_HDR + kl + el
    return 1


def iter_records(const uint8_t[::1] blob):
    """``(key, entry)`` of each record in a :meth:`PackedStore.dump` stream
    (ValueError at a malformed one)."""
    cdef size_t off = 0, klen, elen, n = blob.shape[0]
    cdef const uint8_t* key
    cdef const uint8_t* entry
    cdef int rc
    if n == 0:
        return
    while True:
        rc = packed_next(&blob[0], n, &off, &key, &klen, &entry, &elen)
        if rc == 0:
            return
        if rc < 0:
            raise ValueError(f"malformed packed record at offset {off}")
        yield key[:klen], entry[:elen]


cdef class PackedStore:
    """wire name (bytes, 1..255) → packed entry (bytes), kept in one arena."""

    def __cinit__(self, size_t expected=0):
        cdef size_t n = 16
        while n * 3 < expected * 4:        # load factor at most 3/4
            n <<= 1
        self.slots = <uint64_t*>calloc(n, sizeof(uint64_t))
        if self.slots == NULL:
            raise MemoryError()
        self.nslots = n
        self.arena = NULL
        self.used = self.cap = self.garbage = self.count = self.version = 0

    def __dealloc__(self):
        if self.arena != NULL:
            munmap(self.arena, self.cap)
        free(self.slots)

    # -- internals -----------------------------------------------------------
    cdef Py_ssize_t _find(self, const uint8_t* key, size_t klen, uint64_t h) noexcept:
        cdef size_t mask = self.nslots - 1, i = h & mask
        cdef uint64_t s
        cdef uint32_t tag = h >> 32
        cdef const uint8_t* rec
        while True:
            s = self.slots[i]
            if s == 0:
                return -1
            if <uint32_t>(s >> 32) == tag:
                rec = self.arena + <uint32_t>s - 1
                if rec[0] == klen and memcmp(rec + REC_HDR, key, klen) == 0:
                    return i
            i = (i + 1) & mask

    cdef int _reserve(self, size_t more) except -1:
        cdef size_t want = self.used + more, newcap
        cdef void* p
        if want <= self.cap:
            return 0
        if want > MAX_ARENA:
            raise MemoryError("packed store would exceed 4 GiB")
        newcap = max(want, self.cap + self.cap // 2, <size_t>MIN_ARENA)
        newcap = min((newcap + PAGE - 1) // PAGE * PAGE, MAX_ARENA)
        if self.arena == NULL:
            p = mmap(NULL, newcap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        else:
            p = mremap(self.arena, self.cap, newcap, MREMAP_MAYMOVE)
        if p == MAP_FAILED:
            raise MemoryError(f"packed store cannot grow to {newcap} bytes")
        self.arena = <uint8_t*>p
        self.cap = newcap
        return 0

    cdef int _append(self, const uint8_t* key, size_t klen, const uint8_t* entry,
                     size_t elen, uint32_t* off) except -1:
        self._reserve(REC_HDR + klen + elen)
        cdef uint8_t* rec = self.arena + self.used
        rec[0] = <uint8_t>klen
        _put32(rec + 1, <uint32_t>elen)
        memcpy(rec + REC_HDR, key, klen)
        memcpy(rec + REC_HDR + klen, entry, elen)
        off[0] = <uint32_t>self.used
        self.used += REC_HDR + klen + elen
        return 0

    cdef int _grow_slots(self) except -1:
        cdef size_t n = self.nslots * 2, i, j, mask = n - 1
        cdef uint64_t* fresh = <uint64_t*>calloc(n, sizeof(uint64_t))
        cdef uint64_t s
        cdef const uint8_t* rec
        if fresh == NULL:
            raise MemoryError()
        for i in range(self.nslots):
            s = self.slots[i]
            if s != 0:
                rec = self.arena + <uint32_t>s - 1
                j = _hash(rec + REC_HDR, rec[0]) & mask
                while fresh[j] != 0:
                    j = (j + 1) & mask
                fresh[j] = s
        free(self.slots)
        self.slots = fresh
        self.nslots = n
        return 0

    cdef void _erase(self, size_t i) noexcept:
        """Empty slot ``i`` (backward-shift deletion keeps probe chains whole)."""
        cdef size_t mask = self.nslots - 1, j = i, want
        cdef const uint8_t* rec
        self.slots[i] = 0
        while True:
            j = (j + 1) & mask
            if self.slots[j] == 0:
                return
            rec = self.arena + <uint32_t>self.slots[j] - 1
            want = _hash(rec + REC_HDR, rec[0]) & mask
            if (j > i and (want <= i or want > j)) or (j < i and (want <= i and want > j)):
                self.slots[i] = self.slots[j]
                self.slots[j] = 0
                i = j

    cdef void _kill(self, size_t off) noexcept:
        cdef uint8_t* rec = self.arena + off
        cdef uint32_t el = _get32(rec + 1)
        _put32(rec + 1, el | DEAD)
        self.garbage += REC_HDR + rec[0] + el

    cdef int _compact(self) except -1:
        """Slide the live records down over the dead ones; give the tail back."""
        cdef size_t src = 0, dst = 0, size, keep
        cdef uint8_t* rec
        cdef uint32_t el
        cdef Py_ssize_t i
        while src < self.used:
            rec = self.arena + src
            el = _get32(rec + 1)
            size = REC_HDR + rec[0] + (el & ~DEAD)
            if not el & DEAD:
                i = self._find(rec + REC_HDR, rec[0], _hash(rec + REC_HDR, rec[0]))
                if dst != src:
                    memmove(self.arena + dst, rec, size)
                self.slots[i] = (self.slots[i] & 0xFFFFFFFF00000000ULL) | (dst + 1)
                dst += size
            src += size
        self.used = dst
        self.garbage = 0
        keep = (dst + PAGE - 1) // PAGE * PAGE
        if keep < self.cap:
            madvise(self.arena + keep, self.cap - keep, MADV_DONTNEED)
        self.version += 1
        return 0

    cdef int _maybe_compact(self) except -1:
        if self.garbage > COMPACT_MIN and self.garbage * 8 > self.used:
            self._compact()
        return 0

    # -- changing ------------------------------------------------------------
    def put(self, bytes key not None, bytes entry not None) -> bool:
        """Store ``entry`` under ``key``; False (and nothing changes) if it is already there."""
        cdef size_t klen = len(key), elen = len(entry), j
        cdef const uint8_t* k = key
        cdef uint64_t h
        cdef Py_ssize_t i
        cdef uint8_t* rec
        cdef uint32_t off
        if klen == 0 or klen > MAX_KEY:
            raise ValueError(f"packed store key of {klen} bytes (1..{MAX_KEY})")
        if elen >= DEAD:
            raise ValueError("packed entry too large")
        h = _hash(k, klen)
        i = self._find(k, klen, h)
        if i >= 0:
            rec = self.arena + <uint32_t>self.slots[i] - 1
            if _get32(rec + 1) == elen:
                if memcmp(rec + REC_HDR + klen, <const uint8_t*>entry, elen) == 0:
                    return False
                memcpy(rec + REC_HDR + klen, <const uint8_t*>entry, elen)
                self.version += 1
                return True
            self._kill(<uint32_t>self.slots[i] - 1)
            self._append(k, klen, entry, elen, &off)
            self.slots[i] = ((h >> 32) << 32) | (<uint64_t>off + 1)
            self.version += 1
            self._maybe_compact()
            return True
        if (self.count + 1) * 4 > self.nslots * 3:
            self._grow_slots()
        self._append(k, klen, entry, elen, &off)
        j = h & (self.nslots - 1)
        while self.slots[j] != 0:
            j = (j + 1) & (self.nslots - 1)
        self.slots[j] = ((h >> 32) << 32) | (<uint64_t>off + 1)
        self.count += 1
        self.version += 1
        return True

    def discard(self, bytes key not None) -> bool:
        """Remove ``key``; False if it was absent."""
        cdef size_t klen = len(key)
        cdef Py_ssize_t i
        if klen == 0 or klen > MAX_KEY:
            return False
        i = self._find(key, klen, _hash(key, klen))
        if i < 0:
            return False
        self._kill(<uint32_t>self.slots[i] - 1)
        self._erase(i)
        self.count -= 1
        self.version += 1
        self._maybe_compact()
        return True

    def clear(self) -> None:
        """Remove every name and give the arena back."""
        if self.arena != NULL:
            munmap(self.arena, self.cap)
        self.arena = NULL
        self.used = self.cap = self.garbage = self.count = 0
        for i in range(self.nslots):
            self.slots[i] = 0
        self.version += 1

    # -- reading ---------------------------------------------------------------
    def get(self, key, default=None):
        """The entry of ``key`` (bytes), or ``default``."""
        cdef size_t klen
        cdef Py_ssize_t i
        cdef const uint8_t* rec
        if not isinstance(key, bytes):
            return default
        klen = len(key)
        if klen == 0 or klen > MAX_KEY:
            return default
        i = self._find(<bytes>key, klen, _hash(<bytes>key, klen))
        if i < 0:
            return default
        rec = self.arena + <uint32_t>self.slots[i] - 1
        return rec[REC_HDR + klen:REC_HDR + klen + _get32(rec + 1)]

    def __getitem__(self, key):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return self.count

    def _records(self, bint values):
        cdef size_t off = 0, size
        cdef uint32_t el
        cdef uint8_t kl
        cdef size_t version = self.version
        while off < self.used:
            if self.version != version:
                raise RuntimeError("PackedStore changed during iteration")
            kl = self.arena[off]
            el = _get32(self.arena + off + 1)
            size = REC_HDR + kl + (el & ~DEAD)
            if not el & DEAD:
                key = self.arena[off + REC_HDR:off + REC_HDR + kl]
                if values:
                    yield key, self.arena[off + REC_HDR + kl:off + size]
                else:
                    yield key
            off += size

    def __iter__(self):
        return self._records(False)

    def keys(self):
        """The names (in arena order)."""
        return self._records(False)

    def items(self):
        """``(name, entry)`` pairs (in arena order)."""
        return self._records(True)

    def values(self):
        """The entries (in arena order)."""
        return (v for _, v in self._records(True))

    def __eq__(self, other):
        if not isinstance(other, Mapping) or len(other) != self.count:
            return False
        return all(other.get(k) == v for k, v in self.items())

    __hash__ = None

    def dump(self) -> bytes:
        """The live records back to back (the snapshot stream, see iter_records)."""
        cdef size_t off = 0, dst = 0, size
        cdef uint32_t el
        out = PyBytes_FromStringAndSize(NULL, self.used - self.garbage)
        cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
        while off < self.used:
            el = _get32(self.arena + off + 1)
            size = REC_HDR + self.arena[off] + (el & ~DEAD)
            if not el & DEAD:
                memcpy(p + dst, self.arena + off, size)
                dst += size
            off += size
        return out

    @property
    def memory(self) -> dict:
        """``{"live", "garbage", "arena", "slots"}`` in bytes (arena = mapped, not all resident)."""
        return {"live": self.used - self.garbage, "garbage": self.garbage, "arena": self.cap,
                "slots": self.nslots * sizeof(uint64_t)}


Mapping.register(PackedStore)
