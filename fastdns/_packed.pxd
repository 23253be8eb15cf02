# The coordinator's compiled store: wire name → packed entry, in one arena.
#
# A *record* is ``u8 klen, u32 elen (big-endian), key, entry``.  The store
# keeps its records in one mmap'd arena, and PackedStore.dump() writes the
# live ones back to back: that stream is what a snapshot carries to the
# workers (AnswerTable.load_packed reads it with packed_next).

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef enum:
    REC_HDR = 5                 # u8 klen + u32 elen

cdef int packed_next(const uint8_t* buf, size_t n, size_t* off, const uint8_t** key,
                     size_t* klen, const uint8_t** entry, size_t* elen) noexcept nogil

cdef class PackedStore:
    cdef uint8_t* arena         # records, appended; replaced/deleted ones are garbage
    cdef size_t used            # bytes of the arena written
    cdef size_t cap             # bytes of the arena mapped
    cdef size_t garbage         # bytes of dead records (compacted away past a threshold)
    cdef uint64_t* slots        # (hash32 << 32) | (offset + 1); 0 = empty
    cdef size_t nslots          # power of two
    cdef size_t count
    cdef size_t version         # bumped by every change (iterators check it)
    cdef Py_ssize_t _find(self, const uint8_t* key, size_t klen, uint64_t h) noexcept
    cdef int _append(self, const uint8_t* key, size_t klen, const uint8_t* entry,
                     size_t elen, uint32_t* off) except -1
    cdef int _reserve(self, size_t more) except -1
    cdef int _grow_slots(self) except -1
    cdef void _erase(self, size_t i) noexcept
    cdef int _compact(self) except -1
    cdef void _kill(self, size_t off) noexcept
    cdef int _maybe_compact(self) except -1
