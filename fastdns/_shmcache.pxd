# The shared-memory answer cache: the contract other Cython modules cimport.
#
# One POSIX shared-memory segment holds a header, one counter row per worker
# and two set-associative tables (a "small" and a "large" slot size class).
# Every entry is guarded by a seqlock; a per-slot writer lock word (pid and
# millisecond timestamp, taken by CAS) keeps writers apart and can be stolen
# from a dead or stuck writer.  Readers never write the entry and never wait.
#
# Every function here is `noexcept nogil` and returns a status code (SC_*).
# Layout, policies and limits are documented in _shmcache.pyx's docstring.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef enum:
    SC_NCLASS = 2           # slot size classes: 0 small, 1 large
    SC_NKINDS = 3
    SC_KIND_SUCCESS = 0
    SC_KIND_DENIAL = 1      # NXDOMAIN / NODATA
    SC_KIND_SERVFAIL = 2
    SC_MAX_KEY = 255        # a wire qname, lower-cased by the caller
    SC_MAX_WAYS = 16
    SC_READ_RETRIES = 4     # torn reads retried before a read counts as a miss
    SC_STEAL_MS = 1000      # a writer lock older than this may be taken over

# Status codes.  cache_get: SC_HIT / SC_STALE / SC_MISS / SC_NOSPACE / SC_BADARG.
# cache_put: SC_OK / SC_BUSY / SC_TOOBIG / SC_BADARG.
cdef enum:
    SC_OK = 0
    SC_MISS = 0
    SC_HIT = 1
    SC_STALE = 2            # expired, but within the caller's serve-stale window
    SC_BADARG = -1          # key length 0 or > 255, bad kind, closed cache
    SC_NOSPACE = -2         # cache_get: the output buffer is smaller than the value
    SC_BUSY = -3            # cache_put: every candidate slot is being written by a live writer
    SC_TOOBIG = -4          # cache_put: key + value larger than the large class' slot

cdef struct SlotHead:       # 64 bytes, at the start of every slot; data follows
    uint32_t seq            # seqlock: odd while a write is in progress
    uint32_t _pad0
    uint64_t lock           # 0, or (writer pid << 32) | (CLOCK_MONOTONIC ms & 0xffffffff)
    uint64_t hash           # keyed hash of the key (never 0 when used)
    uint32_t inserted       # seconds, cache_now() clock
    uint32_t ttl            # seconds: expires at inserted + ttl
    uint32_t vlen
    uint16_t klen
    uint16_t qtype
    uint16_t qclass
    uint8_t do_bit          # key flags byte: 1 = DO (2 = CD, if the caller uses it)
    uint8_t kind
    uint8_t used
    uint8_t _pad1[19]

cdef struct TableDesc:      # in the segment header; offsets from the segment start
    uint64_t tag_off        # nbuckets * ways uint64 hints (hash of the entry, 0 = empty)
    uint64_t hit_off        # nbuckets * ways uint32 hit counters
    uint64_t slot_off       # nbuckets * ways slots of slot_size bytes
    uint32_t nbuckets
    uint32_t ways
    uint32_t slot_size
    uint32_t data_cap       # slot_size - sizeof(SlotHead): key + value bytes

cdef struct ShmHeader:
    uint64_t magic          # written last by the creator
    uint32_t version
    uint32_t header_size
    uint64_t total_size
    uint64_t seed           # hash key, random per segment
    uint64_t rows_off
    uint32_t nrows
    uint32_t row_size
    uint32_t capacity       # entries asked for (small + large tables)
    uint32_t flags
    uint32_t creator_pid
    uint32_t slot_head_size
    uint32_t created_at     # cache_now() when created
    uint32_t _pad
    TableDesc tables[2]

cdef struct CounterRow:     # one per worker, padded to its own cache lines
    uint64_t hits[3]        # by kind
    uint64_t stale_hits[3]
    uint64_t misses
    uint64_t inserts[3]
    uint64_t evictions[3]   # a live entry of another key replaced
    int64_t entries[3]      # +1 per insert into a free slot, -1 per removal (sum rows)
    uint64_t too_big
    uint64_t busy
    uint64_t steals
    uint64_t retries        # torn reads retried

cdef struct TableView:
    uint64_t* tags
    uint32_t* hits
    uint8_t* slots
    uint32_t nbuckets
    uint32_t ways
    uint32_t slot_size
    uint32_t data_cap

cdef struct CacheView:      # one process' view of the segment (pointers into its mapping)
    uint8_t* base           # NULL once closed: every call then returns SC_BADARG
    size_t size
    ShmHeader* hdr
    CounterRow* row         # this process' counter row
    uint64_t seed
    uint32_t flags
    uint32_t max_data       # largest key + value a slot holds
    TableView tables[2]

cdef struct CacheMeta:      # filled by cache_get on SC_HIT / SC_STALE
    uint32_t inserted
    uint32_t ttl
    uint32_t hits           # hits of this entry since it was stored (0 if counting is off)
    uint32_t vlen
    uint8_t kind

# Keys: key = wire qname (lower-cased: cache_lower_key), klen 1..255; do_bit is
# a flags byte that splits the key: 1 = DO; callers may add 2 = CD (as
# CoreDNS's cache key does) or other bits.  now = cache_now() seconds.
cdef uint32_t cache_now() noexcept nogil

cdef int cache_get(CacheView* c, const uint8_t* key, uint16_t klen, uint16_t qtype,
                   uint16_t qclass, uint8_t do_bit, uint32_t now, uint32_t stale_window,
                   uint8_t* out, size_t cap, CacheMeta* meta) noexcept nogil

cdef int cache_put(CacheView* c, const uint8_t* key, uint16_t klen, uint16_t qtype,
                   uint16_t qclass, uint8_t do_bit, uint32_t now, const uint8_t* value,
                   size_t vlen, uint32_t ttl, uint8_t kind) noexcept nogil

cdef int cache_delete(CacheView* c, const uint8_t* key, uint16_t klen, uint16_t qtype,
                      uint16_t qclass, uint8_t do_bit) noexcept nogil

cdef inline void cache_lower_key(const uint8_t* src, size_t n, uint8_t* dst) noexcept nogil:
    """Lower-case a wire-format name into dst (n bytes).  Bytewise is safe:
    label length octets are <= 63, below 'A' (65)."""
    cdef size_t i
    cdef uint8_t ch
    for i in range(n):
        ch = src[i]
        dst[i] = ch + 32 if 65 <= ch <= 90 else ch

cdef class SharedCache:
    cdef CacheView _view
    cdef str _name
    cdef bint _owner
    cdef uint8_t* _buf      # get() scratch, max_data bytes
    cdef CacheView* view(self) noexcept
    cdef void _unmap(self) noexcept
    cdef _map(self, uint8_t* base, size_t size)
    cdef _open(self)
    cdef _bench(self, list keys, int qtype, int n, bytes value, bint expect_hit)
