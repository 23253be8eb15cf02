# cimport-only declarations of atomic.h: atomics, fences and the seqlock
# protocol used by the shared-memory cache (see the comment in atomic.h).
from libc.stdint cimport uint32_t, uint64_t, int64_t

cdef extern from "atomic.h" nogil:
    uint32_t fd_load_u32(const uint32_t* p)
    uint32_t fd_load_acq_u32(const uint32_t* p)
    void fd_store_u32(uint32_t* p, uint32_t v)
    void fd_store_rel_u32(uint32_t* p, uint32_t v)
    uint32_t fd_add_u32(uint32_t* p, uint32_t v)
    uint64_t fd_load_u64(const uint64_t* p)
    uint64_t fd_load_acq_u64(const uint64_t* p)
    void fd_store_u64(uint64_t* p, uint64_t v)
    void fd_store_rel_u64(uint64_t* p, uint64_t v)
    uint64_t fd_add_u64(uint64_t* p, uint64_t v)
    bint fd_cas_u64(uint64_t* p, uint64_t* expected, uint64_t desired)
    void fd_bump_u64(uint64_t* p, uint64_t v)
    void fd_bump_i64(int64_t* p, int64_t v)
    int64_t fd_load_i64(const int64_t* p)
    void fd_fence_acq()
    void fd_fence_rel()
    void fd_fence_full()
    void fd_cpu_relax()
    uint32_t fd_seq_read_begin(const uint32_t* seq)
    bint fd_seq_read_retry(const uint32_t* seq, uint32_t start)
    uint32_t fd_seq_write_begin(uint32_t* seq)
    void fd_seq_write_end(uint32_t* seq, uint32_t odd)
