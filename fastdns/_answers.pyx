# cython: language_level=3
"""The worker's compiled answer table: name → (qtype → stored body), in C.

Built and changed from Python (deltas from the coordinator, applied between
batches, so the loop never sees half an update); looked up from C by
``AnswerTable.find`` without the GIL.  Each name is one malloc'd block, so a
replace is one pointer swap and a delete frees one block.

Names loaded from packed entries do not copy their zone's NODATA / NXDOMAIN
body (the qtype-0 answer of almost every name): they refer to the table's
shared copy (:meth:`AnswerTable.set_shared`), ~100 bytes saved per name.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memcmp

from fastdns._packed cimport packed_next



cdef uint64_t key_hash(const uint8_t* key, size_t n) noexcept nogil:
    """FNV-1a, 64 bit (keys are cluster names, not attacker-chosen inserts)."""
    cdef uint64_t h = 1469598103934665603ULL
    cdef size_t i
    for i in range(n):
        h ^= key[i]
        h *= 1099511628211ULL
    return h if h else 1


cdef inline uint32_t* e_offs(const NameEntry* e) noexcept nogil:
    return <uint32_t*>(<uint8_t*>e + sizeof(NameEntry))


cdef inline uint16_t* e_qtypes(const NameEntry* e) noexcept nogil:
    return <uint16_t*>(e_offs(e) + e.n + 1)


cdef inline uint16_t* e_refs(const NameEntry* e) noexcept nogil:
    return e_qtypes(e) + e.n if e.has_refs else NULL


cdef inline uint8_t* e_key(const NameEntry* e) noexcept nogil:
    return <uint8_t*>(e_qtypes(e) + (2 * e.n if e.has_refs else e.n))


cdef inline void _body(const TableCore* t, const NameEntry* e, uint16_t k,
                       const uint8_t** body, size_t* blen) noexcept nogil:
    cdef uint16_t r = e_refs(e)[k] if e.has_refs else 0
    cdef const uint32_t* offs
    if r:
        body[0] = t.shared[r - 1]
        blen[0] = t.shared_len[r - 1]
    else:
        offs = e_offs(e)
        body[0] = e_key(e) + e.klen + offs[k]
        blen[0] = offs[k + 1] - offs[k]


cdef int table_find(const TableCore* t, const uint8_t* key, uint16_t klen, uint16_t qtype,
                    const uint8_t** body, size_t* blen) noexcept nogil:
    """Look ``key`` up: FIND_EXACT (body for qtype), FIND_OTHER (the name's
    qtype-0 body) or FIND_ABSENT."""
    cdef uint64_t h = key_hash(key, klen)
    cdef size_t i = h & (t.cap - 1)
    cdef NameEntry* e
    cdef uint16_t k
    cdef const uint16_t* qts
    while True:
        e = t.slots[i]
        if e == NULL:
            return FIND_ABSENT
        if e.hash == h and e.klen == klen and memcmp(e_key(e), key, klen) == 0:
            qts = e_qtypes(e)
            for k in range(e.n):
                if qts[k] == qtype:
                    _body(t, e, k, body, blen)
                    return FIND_EXACT
            for k in range(e.n):
                if qts[k] == 0:
                    _body(t, e, k, body, blen)
                    return FIND_OTHER
            return FIND_ABSENT
        i = (i + 1) & (t.cap - 1)


cdef class AnswerTable:
    """name (lower-cased wire) → {qtype: body}.  ``set``/``delete`` from Python."""

    def __cinit__(self, size_t initial=1024):
        cdef size_t cap = 16
        while cap < initial * 2:
            cap <<= 1
        self.core.slots = <NameEntry**>calloc(cap, sizeof(NameEntry*))
        if self.core.slots == NULL:
            raise MemoryError()
        self.core.cap = cap
        self.core.count = 0
        self.core.nshared = 0
        self.bytes_used = 0
        self._shared_owner = []

    def __dealloc__(self):
        cdef size_t i
        if self.core.slots != NULL:
            for i in range(self.core.cap):
                if self.core.slots[i] != NULL:
                    free(self.core.slots[i])
            free(self.core.slots)

    def __len__(self) -> int:
        return self.core.count

    @property
    def memory(self) -> int:
        """Bytes held by entries (not counting the slot array)."""
        return self.bytes_used + self.core.cap * sizeof(NameEntry*)

    cdef void _grow(self) noexcept:
        cdef NameEntry** old = self.core.slots
        cdef size_t oldcap = self.core.cap, i, j
        cdef NameEntry** fresh = <NameEntry**>calloc(oldcap * 2, sizeof(NameEntry*))
        if fresh == NULL:
            return
        self.core.slots = fresh
        self.core.cap = oldcap * 2
        for i in range(oldcap):
            if old[i] != NULL:
                j = old[i].hash & (self.core.cap - 1)
                while self.core.slots[j] != NULL:
                    j = (j + 1) & (self.core.cap - 1)
                self.core.slots[j] = old[i]
        free(old)

    cdef void _put(self, NameEntry* e) noexcept:
        cdef size_t i
        cdef NameEntry* cur
        if (self.core.count + 1) * 2 > self.core.cap:
            self._grow()
            if (self.core.count + 2) > self.core.cap:   # could not grow and nearly full:
                free(e)                                 # refuse rather than let a probe loop forever
                return
        i = e.hash & (self.core.cap - 1)
        while True:
            cur = self.core.slots[i]
            if cur == NULL:
                self.core.slots[i] = e
                self.core.count += 1
                return
            if cur.hash == e.hash and cur.klen == e.klen and memcmp(e_key(cur), e_key(e), e.klen) == 0:
                self.core.slots[i] = e
                free(cur)
                return
            i = (i + 1) & (self.core.cap - 1)

    cdef void _remove(self, const uint8_t* key, uint16_t klen) noexcept:
        cdef uint64_t h = key_hash(key, klen)
        cdef size_t mask = self.core.cap - 1
        cdef size_t i = h & mask, j, want
        cdef NameEntry* e
        while True:
            e = self.core.slots[i]
            if e == NULL:
                return
            if e.hash == h and e.klen == klen and memcmp(e_key(e), key, klen) == 0:
                break
            i = (i + 1) & mask
        free(e)
        self.core.slots[i] = NULL
        self.core.count -= 1
        j = i
        while True:                 # backward-shift deletion keeps probes short
            j = (j + 1) & mask
            e = self.core.slots[j]
            if e == NULL:
                return
            want = e.hash & mask
            if (j > i and (want <= i or want > j)) or (j < i and (want <= i and want > j)):
                self.core.slots[i] = e
                self.core.slots[j] = NULL
                i = j

    cdef void _store(self, const uint8_t* key, size_t klen, size_t n, const uint16_t* qtypes,
                     const uint8_t** bodies, const size_t* lens,
                     const uint16_t* refs=NULL) except *:
        """One malloc'd NameEntry holding the key and ``n`` bodies; replaces the name.
        ``refs[k]`` (if given and non-zero) makes body ``k`` the shared body
        ``refs[k] - 1`` instead of a copy of ``bodies[k]``."""
        cdef size_t total = 0, size, off = 0, k, nref = 0
        cdef uint8_t* p
        cdef NameEntry* e
        cdef uint32_t* e_offsets
        cdef uint16_t* e_types
        cdef uint16_t* e_refarr
        cdef uint8_t* e_k
        cdef uint8_t* e_data
        if klen == 0 or klen > 255 or n == 0 or n > 1000:
            raise ValueError("bad answer-table entry")
        for k in range(n):
            if refs != NULL and refs[k]:
                if refs[k] > self.core.nshared:
                    raise ValueError("answer-table entry refers to an unknown shared body")
                nref += 1
            else:
                total += lens[k]
        size = sizeof(NameEntry) + klen + n * 2 + (n + 1) * 4 + (n * 2 if nref else 0) + total + 8
        p = <uint8_t*>malloc(size)
        if p == NULL:
            raise MemoryError()
        e = <NameEntry*>p
        e.klen = <uint16_t>klen
        e.n = <uint16_t>n
        e.has_refs = 1 if nref else 0
        e.pad = 0
        e_offsets = e_offs(e)
        e_types = e_qtypes(e)
        e_refarr = e_refs(e)
        e_k = e_key(e)
        e_data = e_k + klen
        memcpy(e_k, key, klen)
        e.hash = key_hash(e_k, klen)
        for k in range(n):
            e_types[k] = qtypes[k]
            e_offsets[k] = <uint32_t>off
            if e_refarr != NULL:
                e_refarr[k] = refs[k]
                if refs[k]:
                    continue
            memcpy(e_data + off, bodies[k], lens[k])
            off += lens[k]
        e_offsets[n] = <uint32_t>off
        self.bytes_used += size
        self._put(e)

    def set(self, bytes key, list bodies) -> None:
        """Replace the name ``key`` (lower-cased wire) with ``[(qtype, body), ...]``."""
        cdef size_t n = len(bodies), k
        cdef uint16_t qt[1000]
        cdef const uint8_t* ptr[1000]
        cdef size_t ln[1000]
        cdef bytes b
        if n == 0 or n > 1000:
            raise ValueError("bad answer-table entry")
        for k in range(n):
            qtype, b = bodies[k]
            qt[k] = <uint16_t>qtype
            ptr[k] = <const uint8_t*>b
            ln[k] = len(b)
        self._store(key, len(key), n, qt, ptr, ln)

    def set_shared(self, list shared) -> None:
        """The zones' ``(nodata_body, nxdomain_body)`` pairs that packed entries'
        zone references stand for (kept, not copied per name).  Names already
        loaded that refer to a zone see its new bodies."""
        cdef size_t zi
        cdef bytes nd, nx
        if 2 * len(shared) > MAX_SHARED:
            raise ValueError(f"more than {MAX_SHARED // 2} zones in one answer table")
        owner = []
        for zi in range(len(shared)):
            nd, nx = shared[zi]
            owner.append((nd, nx))
        if 2 * len(owner) < self.core.nshared:
            raise ValueError("shared bodies can be replaced, not removed")
        for zi in range(len(owner)):
            nd, nx = owner[zi]
            self.core.shared[2 * zi] = <const uint8_t*>nd
            self.core.shared_len[2 * zi] = <uint32_t>len(nd)
            self.core.shared[2 * zi + 1] = <const uint8_t*>nx
            self.core.shared_len[2 * zi + 1] = <uint32_t>len(nx)
        self.core.nshared = 2 * len(owner)
        self._shared_owner = owner

    cdef int _set_packed(self, const uint8_t* key, size_t klen, const uint8_t* p,
                         size_t elen) except -1:
        """One packed entry (fastdns.compiled) into the table;
        its zone references point at the shared bodies (see set_shared)."""
        cdef size_t n, zone, off, k, l
        cdef uint16_t qt[255]
        cdef const uint8_t* ptr[255]
        cdef size_t ln[255]
        cdef uint16_t refs[255]
        if elen < 2:
            raise ValueError("packed entry too short")
        n = p[0]
        zone = p[1]
        off = 2 + 4 * n
        if off > elen or n == 0:
            raise ValueError("packed entry header out of bounds")
        for k in range(n):
            qt[k] = (p[2 + 4 * k] << 8) | p[3 + 4 * k]
            l = (p[4 + 4 * k] << 8) | p[5 + 4 * k]
            refs[k] = 0
            ptr[k] = NULL
            ln[k] = 0
            if l >= 0xFFFE:
                if 2 * zone + 2 > self.core.nshared:
                    raise ValueError("packed entry names an unknown zone")
                refs[k] = <uint16_t>(2 * zone + (1 if l == 0xFFFE else 0) + 1)
            else:
                if off + l > elen:
                    raise ValueError("packed entry body out of bounds")
                ptr[k] = p + off
                ln[k] = l
                off += l
        self._store(key, klen, n, qt, ptr, ln, refs)
        return 0

    def set_packed(self, bytes key, bytes entry) -> None:
        """Replace ``key`` from a packed entry (fastdns.compiled):
        ``u8 n, u8 zone, n x (u16 qtype, u16 len), bodies``; a len of 0xFFFF /
        0xFFFE stands for zone ``zone``'s NODATA / NXDOMAIN body registered with
        :meth:`set_shared` (ValueError if it was not)."""
        self._set_packed(key, len(key), entry, len(entry))

    def load_packed(self, const uint8_t[::1] records, list shared) -> int:
        """Add every record of a ``PackedStore.dump()`` stream (fastdns._packed);
        returns how many.  ValueError at a malformed record (those before it stay)."""
        cdef size_t off = 0, klen, elen, n = records.shape[0], count = 0
        cdef const uint8_t* key
        cdef const uint8_t* entry
        cdef int rc
        self.set_shared(shared)
        if n == 0:
            return 0
        while True:
            rc = packed_next(&records[0], n, &off, &key, &klen, &entry, &elen)
            if rc == 0:
                return count
            if rc < 0:
                raise ValueError(f"malformed packed record at offset {off}")
            self._set_packed(key, klen, entry, elen)
            count += 1

    def delete(self, bytes key) -> None:
        """Remove the name ``key`` (no error if it is absent)."""
        self._remove(key, len(key))

    def clear(self) -> None:
        cdef size_t i
        for i in range(self.core.cap):
            if self.core.slots[i] != NULL:
                free(self.core.slots[i])
                self.core.slots[i] = NULL
        self.core.count = 0
        self.bytes_used = 0

    def keys(self) -> list:
        """Every name (lower-cased wire) in the table, in slot order (read-only;
        for zone transfers and tests, not for the query path)."""
        cdef size_t i
        cdef NameEntry* e
        out = []
        for i in range(self.core.cap):
            e = self.core.slots[i]
            if e != NULL:
                out.append(e_key(e)[:e.klen])
        return out

    def entry(self, bytes key):
        """``[(qtype, body), ...]`` stored for ``key`` in stored order, shared zone
        bodies included as copies; None if the name is absent (read-only)."""
        cdef uint16_t klen = <uint16_t>len(key)
        cdef uint64_t h
        cdef size_t i
        cdef NameEntry* e
        cdef uint16_t k
        cdef const uint8_t* body
        cdef size_t blen
        cdef const uint16_t* qts
        if len(key) == 0 or len(key) > 255:
            return None
        h = key_hash(key, klen)
        i = h & (self.core.cap - 1)
        while True:
            e = self.core.slots[i]
            if e == NULL:
                return None
            if e.hash == h and e.klen == klen and memcmp(e_key(e), <const uint8_t*>key, klen) == 0:
                qts = e_qtypes(e)
                out = []
                for k in range(e.n):
                    _body(&self.core, e, k, &body, &blen)
                    out.append((qts[k], body[:blen]))
                return out
            i = (i + 1) & (self.core.cap - 1)

    def get(self, bytes key, int qtype):
        """``(found, body)`` for tests: found is 'exact', 'other' or None."""
        cdef const uint8_t* body
        cdef size_t blen
        cdef int rc = table_find(&self.core, key, len(key), qtype, &body, &blen)
        if rc == FIND_EXACT:
            return "exact", body[:blen]
        if rc == FIND_OTHER:
            return "other", body[:blen]
        return None, None
