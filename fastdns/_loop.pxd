# The worker's answer engine (C level): routing, table, cache, batches.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from fastdns._wire cimport QueryInfo
from fastdns._answers cimport TableCore
from fastdns._shmcache cimport CacheView
from net cimport mmsghdr, iovec, sockaddr_storage, socklen_t

cdef enum:
    BATCH = 64
    INBUF = 4096            # largest UDP query read (bigger ones are truncated: dropped)
    OUTBUF = 4096
    MAX_LISTENERS = 16
    MAX_LZONES = 32
    MAX_BLOCKS = 32
    MAX_AZONES = 8
    MAX_FALL = 8
    MAX_STAGES = 16           # C stages per server block
    MAX_TABLES = 64           # compiled tables across all blocks (one per table stage)
    NCOUNTERS = 19456         # per-worker counter row (= opsstats ST_NCOUNTERS): section 0 = the C_* indices below;
                              # per-block and forward sections: _includes/opsstats.pxd

# outcome of answering one query
cdef enum:
    A_DROP = 0
    A_MISS = -1             # Python must handle it (forward, plugins in Python)
    A_NEXT = -3             # (a stage's own outcome) the next stage of the chain decides
    A_TAKEN = -4            # the C forwarder took it: answered when upstream answers

# counter indices (per worker)
cdef enum:
    C_REQ_UDP = 0
    C_REQ_TCP = 1
    C_TABLE = 2             # answered from the compiled table (incl. its negatives)
    C_CACHE_HIT = 3
    C_CACHE_MISS = 4
    C_TO_PYTHON = 5
    C_DROPPED = 6
    C_REQ_BYTES = 7
    C_RESP_BYTES = 8
    C_SEND_ERR = 9
    C_FORWARD = 10          # UDP misses taken by the C forwarder (_loop_forward.pxi)
    C_RCODE = 16            # C_RCODE + rcode (0..23): responses by rcode

cdef struct LZone:
    uint8_t name[256]
    uint16_t len
    int block

cdef struct LConf:
    int nzones
    LZone zones[MAX_LZONES]     # longest first

cdef struct AZone:
    uint8_t name[256]
    uint16_t len
    const uint8_t* nx
    size_t nx_len
    const uint8_t* nodata
    size_t nodata_len

# what one stage of a block's chain does (fastdns.plugins.runtime: a plugin's
# engine capabilities, in CoreDNS's plugin order)
cdef enum:
    K_TABLE = 1             # answer from a compiled table (kubernetes, hosts...)
    K_CACHE = 2             # the shared cache (filled by the Python stages' answers)
    K_PYTHON = 3            # hand the query to the worker's Python handlers
    K_ANY = 4               # qtype ANY: the RFC 8482 HINFO (any)
    K_WHOAMI = 5            # the client's address and port (whoami)
    K_ACL = 6               # allow / block / filter / drop by source and qtype (acl)
    K_LOCAL = 7             # localhost and the loopback reverse zones (local; any_name:
                            # localhost_prefix, "localhost.<anything>" answered too)

cdef struct Stage:
    int kind
    int src                     # metrics source (the plugin label of what it answers)
    const uint8_t* data         # K_ACL: its rules, encoded (fastdns.plugins.acl.encode);
                                # K_PYTHON: NULL, or its prefilter (fastdns.plugins.template.dfa.encode)
    size_t data_len
    # K_TABLE
    int tid                     # its table (Engine.tables[tid]; NULL: nothing compiled yet)
    uint16_t qclass             # the class it answers (1 IN)
    bint any_name               # names outside its zones are looked up too (hosts: PTR)
    bint wildcard               # an absent name tries "*.<parent>" (hosts)
    bint encloser               # an absent name: its closest encloser's BELOW body, *.<encloser>, or the
                                # zone's NXDOMAIN entry; FALL-marked names fall through (file)
    bint refuse_xfr             # AXFR/IXFR in its zones: REFUSED (kubernetes)
    bint soa_nodata             # SOA of an absent name: the zone's NODATA (kubernetes)
    uint16_t pass_qtype         # answered only by an exact entry, else the next stage (hosts: PTR)
    # K_TABLE and K_PYTHON: auth[] are its zones (K_PYTHON: any_name, every name)
    int nqtypes                 # K_PYTHON: only queries of these types go to Python (0: all)
    uint16_t qtypes[8]
    int pods                    # 1: pods insecure (synthesised A/AAAA under <ns>.pod.<zone>)
    uint32_t pod_ttl
    int nauth
    AZone auth[MAX_AZONES]      # its zones; nx NULL: an absent name is SERVFAIL
    void* fwd                   # K_PYTHON of forward: its FwBlock (Engine.set_forward), or NULL
    bint fall_all
    int nfall
    uint8_t fall[MAX_FALL][256]
    uint16_t fall_len[MAX_FALL]

cdef struct BConf:
    int nstages
    Stage* stages               # nstages, in execution order
    bint cache                  # (K_CACHE settings, also for the Python side's fills)
    uint32_t stale_window
    bint keepttl                # cache keepttl: cache hits keep the TTLs they were stored with
    uint8_t cache_ns            # its entries' namespace in the shared cache (key flags >> 1)
    bint python                 # some stage hands queries to Python
    uint16_t ra                 # F_RA when this block recurses (forward)
    bint shuffle                # loadbalance round_robin: shuffle A/AAAA answers
    bint log                    # log plugin: answered queries go to the log sink
    bint minimal                # minimal: answers keep only the answer section (and OPT)
    uint16_t bufsize            # bufsize: the largest UDP answer for EDNS clients (0: default)
    const uint8_t* nsid         # nsid: the identifier answered to queries that ask (NULL: off)
    uint16_t nsid_len

cdef struct TConn:
    # one client TCP connection, served in C (RFC 7766: pipelined, answers in
    # completion order).  fd -1: the slot is free.
    int fd
    int listener
    uint32_t serial             # bumped per use of the slot: stale tokens are ignored
    uint8_t* inb                # received bytes not yet a complete frame (grows to one frame)
    uint32_t inlen
    uint32_t incap
    uint8_t* outb               # answers not yet sent (bounded: max_buffered)
    uint32_t outoff
    uint32_t outlen
    uint32_t outcap
    uint64_t deadline           # ns: closed unless a whole query arrives by then
    uint64_t active             # ns: accepted or last whole query (the oldest idle goes first)
    bint writing                # EPOLLOUT registered
    socklen_t alen
    sockaddr_storage addr

cdef class Engine:
    cdef int nlisteners
    cdef LConf* listeners
    cdef int nblocks
    cdef BConf* blocks
    cdef CacheView* cache
    cdef object _cache_ref
    cdef const TableCore* tables[MAX_TABLES]   # by table id
    cdef bint tsynced[MAX_TABLES]
    cdef Stage* tstage[MAX_TABLES]             # the stage each table id belongs to
    cdef int ntables
    cdef dict _keep              # block / (block, zone) → the objects the C structs point into
    cdef uint64_t _own_counters[NCOUNTERS]
    cdef uint64_t* ctr
    cdef object _ctr_ref
    # metrics / loadbalance / log (set by answer() for the query in hand)
    cdef bint detail             # per-block counters and histograms (prometheus is on)
    cdef bint logging            # some block has the log plugin and a sink is set
    cdef int cur_block
    cdef int cur_src
    cdef int cur_stage           # the stage that handed the query to Python (A_MISS)
    cdef bint resuming           # in resume(): the cache's hit/miss counters are not counted again
    cdef uint16_t cur_qtype
    cdef bint cur_do
    cdef bint cur_shuffle
    cdef bint cur_log
    cdef uint64_t rng
    cdef int blk_of[BATCH]
    cdef int log_idx[BATCH]
    cdef long log_len[BATCH]
    cdef object log_sink
    # batch buffers
    cdef mmsghdr rmsgs[BATCH]
    cdef mmsghdr smsgs[BATCH]
    cdef iovec riov[BATCH]
    cdef iovec siov[BATCH]
    cdef sockaddr_storage addrs[BATCH]
    cdef uint8_t* inbuf
    cdef uint8_t* outbuf
    cdef int miss_idx[BATCH]
    cdef int miss_stage[BATCH]     # the stage that handed each miss to Python
    cdef QueryInfo q
    cdef uint8_t scratch[8192]     # a cache value copied out under its seqlock
    # TCP clients (limits from fastdns.limits via set_tcp_limits)
    cdef TConn* conns
    cdef int max_conns
    cdef int nconns
    cdef int* free_slots
    cdef int nfree
    cdef int epfd
    cdef uint64_t idle_ns
    cdef uint32_t max_buffered
    cdef int accept_batch
    cdef int max_per_source
    cdef uint64_t evict_idle_ns
    cdef int ntl
    cdef int tl_fd[MAX_LISTENERS]
    cdef int tl_li[MAX_LISTENERS]
    cdef bint tl_on[MAX_LISTENERS]
    cdef uint64_t tl_resume        # listeners paused (out of descriptors) until then
    cdef uint64_t next_sweep
    cdef uint8_t* tcpout           # one TCP answer (2-byte length + message)
    cdef uint64_t tcp_stat[6]      # accepted, refused (over the limit), expired, closed,
                                   # refused (per source), evicted (idle, for a new one)
    # the forwarding miss path in C (_loop_forward.pxi)
    cdef void* fw                  # FwState*, NULL until set_forward_limits
    cdef int udp_fd[MAX_LISTENERS] # each listener's UDP socket (run() sets them), -1: none
    cdef object udp_misses         # run()'s misses list: flights handed back to Python
    cdef object tcp_misses         # run()'s tcp_misses list (the same, for TCP clients)
    cdef uint64_t cur_token        # in _tcp_frame: the connection's token (fw_start), else 0
    cdef uint64_t* allctr          # every worker's counter row (attach_counter_rows), or NULL
    cdef int nrows
    cdef object _rows_ref
    cdef bint taking               # in serve_udp: the forwarder may take misses

    cdef void _free_stages(self) noexcept
    cdef void _forget_forward(self) noexcept
    cdef long answer(self, int li, const uint8_t* pkt, size_t n, QueryInfo* q,
                     uint8_t* out, size_t cap, bint tcp, int start,
                     const sockaddr_storage* peer) noexcept nogil
    cdef long _table_stage(self, Stage* S, QueryInfo* q, uint8_t* out, size_t cap,
                           size_t limit) noexcept nogil
    cdef long _cache_stage(self, BConf* B, QueryInfo* q, uint8_t* out, size_t cap,
                           size_t limit) noexcept nogil
    cdef void _tcp_close(self, int slot, int why) noexcept
    cdef void _tcp_accept(self, int t, uint64_t now) noexcept
    cdef int _tcp_room(self, sockaddr_storage* addr, uint64_t now) noexcept
    cdef bint _tcp_queue(self, int slot, const uint8_t* data, size_t n) noexcept
    cdef void _tcp_flush(self, int slot) noexcept
    cdef int _tcp_frame(self, int slot, const uint8_t* pkt, size_t n, list misses,
                        uint64_t t0) except -1
    cdef void _tcp_readable(self, int slot, list misses, uint64_t now) except *
    cdef void _tcp_sweep(self, uint64_t now) noexcept
    cdef int _serve_tcp(self, list misses) except -1
