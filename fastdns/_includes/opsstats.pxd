# cimport-only: the layout of a worker's counter row and the inline C that fills it.
#
# A row is ST_NCOUNTERS uint64 counters in sections of ST_SECT:
#
#   section 0                global: the Engine's C_* indices (_loop.pxd, 0..63)
#   section 1                block "dropped": queries that matched no server block
#   section 2 + b            server block b (b < 32), offsets B_* below
#   sections ST_FWD..+1      forward: upstream u (0..15) at ST_FWD*ST_SECT + u*F_STRIDE,
#                            offsets F_* below.  u is the upstream's index in the Plan,
#                            counting every ``forward`` TO in Corefile order across blocks
#                            (fastdns.metrics.forward_upstreams(plan) lists them).
#
# Histogram buckets are stored per bucket (not cumulative); the last one is +Inf.
# The coordinator owns one extra row (fastdns.stats) for what it counts itself
# (upstream health checks).  fastdns.metrics turns rows into CoreDNS's metrics.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "<string.h>" nogil:
    void* memcpy_ "memcpy"(void* dst, const void* src, size_t n)

cdef enum:
    ST_SECT = 512
    ST_DROPPED_SECT = 1
    ST_BLOCK_SECT = 2
    ST_MAX_BLOCKS = 32
    ST_FWD = 34
    ST_FWD_UPSTREAMS = 16
    F_STRIDE = 64
    ST_NCOUNTERS = 38 * 512
    NTYPES = 20             # CoreDNS's monitored qtypes + "other" (fastdns.metrics.QTYPES)
    NSRC = 16               # who wrote the response: fastdns.plugins.runtime.sources() (0: the server)
    NDUR = 17               # TimeBuckets: 0.25ms * 2^k, k = 0..15, + Inf
    NSIZE = 15              # SizeBuckets: 0,100,200,300,400,511,1023,2047,4095,8291,16e3,32e3,48e3,64e3, + Inf
    # offsets in a block section
    B_REQ = 0               # + (proto * 2 + family) * NTYPES + type slot   (proto 0 udp 1 tcp; family 0 v4 1 v6)
    B_RCODE = 80            # + src * 16 + rcode
    B_DUR = 336             # + duration bucket
    B_DUR_SUM = 353         # nanoseconds
    B_REQSZ = 354           # + proto * 16 + size bucket
    B_REQSZ_SUM = 386       # + proto
    B_RESPSZ = 388          # + proto * 16 + size bucket
    B_RESPSZ_SUM = 420      # + proto
    B_DO = 422              # requests with the DO bit
    # offsets of one upstream in the forward sections (for the forwarder to count)
    F_REQ = 0               # queries sent to this upstream
    F_RCODE = 1             # + rcode (0..15): responses received
    F_HC_FAIL = 17          # failed health checks
    F_TIMEOUT = 18          # queries that got no answer in time
    F_DUR = 19              # + duration bucket (NDUR)
    F_DUR_SUM = 36          # nanoseconds
    # on a forward directive's first upstream (both forwarders, C and Python):
    F_WAITING = 37          # a gauge: clients waiting on the directive in this worker
                            # (max_concurrent compares the sum over every row)
    F_MC_REJECT = 38        # queries refused for max_concurrent


cdef extern from "<time.h>" nogil:
    ctypedef struct st_timespec "struct timespec":
        long tv_sec
        long tv_nsec
    int st_clock_gettime "clock_gettime"(int clk, st_timespec* ts)
    int ST_CLOCK_MONOTONIC "CLOCK_MONOTONIC"


cdef inline uint64_t st_now_ns() noexcept nogil:
    cdef st_timespec ts
    st_clock_gettime(ST_CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec


cdef inline int st_type_slot(uint16_t t) noexcept nogil:
    """The order of fastdns.metrics.QTYPES."""
    if t == 1: return 0        # A
    if t == 28: return 1       # AAAA
    if t == 5: return 2        # CNAME
    if t == 48: return 3       # DNSKEY
    if t == 43: return 4       # DS
    if t == 15: return 5       # MX
    if t == 50: return 6       # NSEC3
    if t == 47: return 7       # NSEC
    if t == 2: return 8        # NS
    if t == 12: return 9       # PTR
    if t == 46: return 10      # RRSIG
    if t == 6: return 11       # SOA
    if t == 33: return 12      # SRV
    if t == 16: return 13      # TXT
    if t == 65: return 14      # HTTPS
    if t == 64: return 15      # SVCB
    if t == 251: return 16     # IXFR
    if t == 252: return 17     # AXFR
    if t == 255: return 18     # ANY
    return 19                  # other


cdef inline int st_dur_bucket(uint64_t ns) noexcept nogil:
    cdef uint64_t bound = 250000
    cdef int k
    for k in range(16):
        if ns <= bound:
            return k
        bound <<= 1
    return 16


cdef inline int st_size_bucket(uint64_t n) noexcept nogil:
    if n <= 100:
        return 0 if n == 0 else 1
    if n <= 200: return 2
    if n <= 300: return 3
    if n <= 400: return 4
    if n <= 511: return 5
    if n <= 1023: return 6
    if n <= 2047: return 7
    if n <= 4095: return 8
    if n <= 8291: return 9
    if n <= 16000: return 10
    if n <= 32000: return 11
    if n <= 48000: return 12
    if n <= 64000: return 13
    return 14


cdef inline uint64_t* st_block(uint64_t* ctr, int block) noexcept nogil:
    """The section of server block ``block`` (-1: "dropped")."""
    if block < 0 or block >= ST_MAX_BLOCKS:
        return ctr + ST_DROPPED_SECT * ST_SECT
    return ctr + (ST_BLOCK_SECT + block) * ST_SECT


cdef inline void st_request(uint64_t* sect, uint16_t qtype, size_t qlen, bint v6, bint tcp,
                            bint do_bit) noexcept nogil:
    cdef int proto = 1 if tcp else 0
    sect[B_REQ + (proto * 2 + (1 if v6 else 0)) * NTYPES + st_type_slot(qtype)] += 1
    sect[B_REQSZ + proto * 16 + st_size_bucket(qlen)] += 1
    sect[B_REQSZ_SUM + proto] += qlen
    if do_bit:
        sect[B_DO] += 1


cdef inline void st_response(uint64_t* sect, int src, int rcode, size_t rlen,
                             bint tcp) noexcept nogil:
    cdef int proto = 1 if tcp else 0
    sect[B_RCODE + src * 16 + (rcode & 15)] += 1
    sect[B_RESPSZ + proto * 16 + st_size_bucket(rlen)] += 1
    sect[B_RESPSZ_SUM + proto] += rlen


cdef inline void st_duration(uint64_t* sect, uint64_t ns) noexcept nogil:
    sect[B_DUR + st_dur_bucket(ns)] += 1
    sect[B_DUR_SUM] += ns


# -- loadbalance round_robin ---------------------------------------------------

cdef inline uint64_t lb_next(uint64_t* s) noexcept nogil:
    """xorshift64*: cheap, per worker; not for anything secret."""
    cdef uint64_t x = s[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    s[0] = x
    return x * <uint64_t>2685821657736338717


cdef inline long lb_skip_name(const uint8_t* m, size_t n, size_t pos) noexcept nogil:
    """Offset after the (possibly compressed) name at ``pos``; -1 if malformed."""
    cdef int guard = 0
    while pos < n and guard < 128:
        if m[pos] == 0:
            return <long>pos + 1
        if m[pos] >= 0xC0:
            return <long>pos + 2 if pos + 2 <= n else -1
        if m[pos] > 63:
            return -1
        pos += 1 + m[pos]
        guard += 1
    return -1


cdef inline void lb_shuffle(uint8_t* m, size_t n, uint64_t* rng) noexcept nogil:
    """Shuffle A and AAAA records of the answer section in place.

    Only records whose owner is one compression pointer are moved, and only
    among records with the same owner pointer and type (so the same length):
    the bytes swapped are TTL + RDATA, every pointer in the message stays
    where it was and still points backwards.  Anything unexpected: no-op."""
    cdef uint16_t qd, an, i, j, k, nc
    cdef long pos
    cdef size_t p
    cdef uint16_t t
    cdef uint16_t rdlen
    cdef uint32_t offs[64]
    cdef uint16_t keys[64]
    cdef uint16_t types[64]
    cdef uint16_t grp[64]
    cdef uint8_t tmp[24]            # TTL + RDLENGTH + AAAA rdata = 22 bytes
    cdef uint32_t a, b
    cdef int w, ln
    if n < 12:
        return
    qd = (m[4] << 8) | m[5]
    an = (m[6] << 8) | m[7]
    if qd != 1 or an < 2:
        return
    pos = lb_skip_name(m, n, 12)
    if pos < 0 or <size_t>pos + 4 > n:
        return
    pos += 4
    nc = 0
    for i in range(an):
        p = <size_t>pos
        pos = lb_skip_name(m, n, p)
        if pos < 0 or <size_t>pos + 10 > n:
            return
        t = (m[pos] << 8) | m[pos + 1]
        rdlen = (m[pos + 8] << 8) | m[pos + 9]
        if <size_t>pos + 10 + rdlen > n:
            return
        if (<size_t>pos == p + 2 and m[p] >= 0xC0 and nc < 64
                and ((t == 1 and rdlen == 4) or (t == 28 and rdlen == 16))):
            offs[nc] = <uint32_t>pos + 4          # TTL + RDLENGTH + RDATA
            keys[nc] = (m[p] << 8) | m[p + 1]
            types[nc] = t
            nc += 1
        pos += 10 + rdlen
    # Fisher-Yates within each (owner, type) group
    for i in range(nc):
        if keys[i] == 0:
            continue
        k = 0
        for j in range(i, nc):
            if keys[j] == keys[i] and types[j] == types[i]:
                grp[k] = j
                k += 1
        ln = 6 + (4 if types[i] == 1 else 16)
        if k > 1:
            for j in range(k - 1, 0, -1):
                w = <int>(lb_next(rng) % (j + 1))
                if w != j:
                    a = offs[grp[j]]
                    b = offs[grp[w]]
                    memcpy_(tmp, m + a, ln)
                    memcpy_(m + a, m + b, ln)
                    memcpy_(m + b, tmp, ln)
        for j in range(k):
            keys[grp[j]] = 0
