# The compiled answer table a worker looks names up in (C level).
#
# One entry per existing name: its lower-cased wire name and, per qtype, a
# stored body (see _wire.pxd).  qtype 0 holds the answer for every other
# qtype of that name (NODATA, or what the compiler chose).  A name that is
# absent is NXDOMAIN; the caller then uses the zone's own bodies.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    MAX_SHARED = 512            # shared bodies per table: 256 zones x (NODATA, NXDOMAIN)

cdef struct NameEntry:
    # followed in the same allocation by (no pointers: 16 bytes of header per name):
    #   uint32_t offs[n + 1]    body i is data[offs[i]:offs[i+1]]
    #   uint16_t qtypes[n]
    #   uint16_t refs[n]        only if has_refs: 0 inline, else 1 + index into shared
    #   uint8_t  key[klen]
    #   uint8_t  data[...]
    uint64_t hash
    uint16_t klen
    uint16_t n                  # (qtype, body) pairs
    uint16_t has_refs
    uint16_t pad

cdef enum:
    FIND_ABSENT = 0
    FIND_EXACT = 1
    FIND_OTHER = 2              # the name exists; body is its qtype-0 answer

cdef struct TableCore:
    NameEntry** slots           # open addressing, linear probing, power-of-two size
    size_t cap
    size_t count
    const uint8_t* shared[MAX_SHARED]   # zone z: [2z] NODATA, [2z+1] NXDOMAIN body
    uint32_t shared_len[MAX_SHARED]
    size_t nshared

cdef int table_find(const TableCore* t, const uint8_t* key, uint16_t klen, uint16_t qtype,
                    const uint8_t** body, size_t* blen) noexcept nogil

cdef class AnswerTable:
    cdef TableCore core
    cdef size_t bytes_used
    cdef list _shared_owner     # the bytes core.shared points into
    cdef void _put(self, NameEntry* e) noexcept
    cdef void _store(self, const uint8_t* key, size_t klen, size_t n, const uint16_t* qtypes,
                     const uint8_t** bodies, const size_t* lens,
                     const uint16_t* refs=*) except *
    cdef int _set_packed(self, const uint8_t* key, size_t klen, const uint8_t* p,
                         size_t elen) except -1
    cdef void _remove(self, const uint8_t* key, uint16_t klen) noexcept
    cdef void _grow(self) noexcept

cdef uint64_t key_hash(const uint8_t* key, size_t n) noexcept nogil
