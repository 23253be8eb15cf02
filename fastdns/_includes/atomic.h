/* Atomics and seqlock helpers for memory shared between processes.
 *
 * Everything is a static inline over the GCC/Clang __atomic builtins, so it
 * compiles to plain loads/stores plus compiler barriers on x86-64 and to the
 * right barriers on arm64.  The seqlock follows Boehm, "Can seqlocks get
 * along with programming language memory models?" (MSPC 2012):
 *
 *   writer:  s = seq (even);  store seq = s+1 (relaxed);  fence(release);
 *            write the data;  store seq = s+2 (release)
 *   reader:  s1 = load seq (acquire);  odd -> busy;  copy the data;
 *            fence(acquire);  s2 = load seq (relaxed);  s1 == s2 -> copy valid
 */
#ifndef FASTDNS_ATOMIC_H
#define FASTDNS_ATOMIC_H

#include <stdint.h>

static inline uint32_t fd_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t fd_load_acq_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fd_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void fd_store_rel_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t fd_add_u32(uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }

static inline uint64_t fd_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t fd_load_acq_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fd_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void fd_store_rel_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t fd_add_u64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
/* Strong compare-and-swap; on failure *expected receives the current value. */
static inline int fd_cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Counters with a single writer (one process owns its row): no lock prefix,
 * but the store is atomic so another process reading the row never sees a
 * torn 64-bit value. */
static inline void fd_bump_u64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}
static inline void fd_bump_i64(int64_t *p, int64_t v) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}
static inline int64_t fd_load_i64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static inline void fd_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void fd_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void fd_fence_full(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline void fd_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
#endif
}

/* ---- seqlock ---------------------------------------------------------- */

/* Reader: the sequence to remember, or an odd value (a write is in progress). */
static inline uint32_t fd_seq_read_begin(const uint32_t *seq) { return fd_load_acq_u32(seq); }

/* Reader: nonzero when the data copied since fd_seq_read_begin() may be torn. */
static inline int fd_seq_read_retry(const uint32_t *seq, uint32_t start) {
    fd_fence_acq();
    return fd_load_u32(seq) != start;
}

/* Writer (already the exclusive owner of the slot): make seq odd, and make
 * that visible before any data store.  A seq left odd by a writer that died
 * moves on by 2 so it stays odd but differs from what anyone saw before.
 * Returns the odd value written. */
static inline uint32_t fd_seq_write_begin(uint32_t *seq) {
    uint32_t s = fd_load_u32(seq);
    s += (s & 1u) ? 2u : 1u;
    fd_store_u32(seq, s);
    fd_fence_rel();
    return s;
}

/* Writer: publish the data written since fd_seq_write_begin(). */
static inline void fd_seq_write_end(uint32_t *seq, uint32_t odd) {
    fd_store_rel_u32(seq, odd + 1u);
}

#endif /* FASTDNS_ATOMIC_H */
