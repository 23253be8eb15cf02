# Included by _loop.pyx: the forwarding miss path in C (CoreDNS ``forward`` + ``cache``).
#
# A block whose ``forward`` the worker installed with ``Engine.set_forward`` has its
# UDP clients' misses forwarded here, with no Python per query:
#
# * one *flight* per distinct question (block, name, type, class, DO): identical
#   questions in flight wait for the same upstream answer (coalescing);
# * every upstream query gets its own socket, connected from a fresh port the
#   kernel picks at random from its ephemeral range, and an ID from the kernel's
#   CSPRNG (getrandom); the socket is closed when its answer (or timeout) ends
#   the attempt.  An answer is taken only from that socket (so from the upstream's
#   address and port), with the ID and the question (name case-insensitively,
#   type, class) asked; anything else is counted and ignored, never cached;
# * timeouts (``read_timeout``), ICMP refusals and failover rcodes move the flight
#   to the next upstream in policy order (healthy ones first: the coordinator's
#   health flags and this worker's own consecutive failures, ``max_fails``); with
#   none left every waiter gets SERVFAIL (cached ``servfail`` seconds);
# * the answer is stored in the shared cache under the block's cache policy (the
#   same decisions as fastdns.worker.cachefill.CachePolicy) and written to every
#   waiter with its own ID, question spelling and size limit.
#
# What stays in Python (fastdns.worker.forwarder): TCP clients, ``force_tcp`` and
# DoT groups, answers with TC (retried over TCP there) or that a stored body cannot
# hold (relayed there), blocks with ``prefetch``, and loop-detection probes (HINFO).
# Those queries are handed over as ordinary misses at the forward stage.

cdef extern from "<sys/socket.h>" nogil:
    int SOCK_DGRAM
    int SOCK_STREAM
    int SOL_SOCKET
    int SO_ERROR
    int getsockname(int fd, sockaddr* addr, socklen_t* alen)
    int bind(int fd, const sockaddr* addr, socklen_t alen)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* vlen)

cdef extern from "<sys/random.h>" nogil:
    ssize_t getrandom(void* buf, size_t n, unsigned int flags)

cdef extern from "<errno.h>" nogil:
    int ECONNREFUSED
    int EINPROGRESS

DEF FW_MAX_GROUPS = 8         # forward directives per block handled in C
DEF FW_MAX_UPS = 16           # upstreams per directive (forward's MAX_UPSTREAMS is 15)
DEF FW_MAX_EXCEPT = 8
DEF FW_MAX_ZONES = 8          # cache zones / disable zones handled in C
DEF FW_MAX_FLAGS = 128        # health flags per block
DEF FW_QBUF = 512             # a waiting client's query is kept (longer ones: Python)
DEF FW_RND = 4096             # random bytes fetched per getrandom() call
DEF FW_FAIL_SAFE_TTL = 5      # = cachefill.FAIL_SAFE_TTL
DEF FW_MAX_MSG_TTL = 3600     # = cachefill.MAX_MSG_TTL
DEF FW_ERRORS = 256           # failures kept for the errors plugin between two drains
DEF FW_TCP_PIPE = 256         # queries in flight per upstream TCP connection (ID low byte)
DEF FW_TCP_PER_UP = 4         # = limits.UPSTREAM_TCP_CONNS_PER_UPSTREAM
DEF FW_TCP_SPREAD = 16        # in flight on every connection: open another (up to PER_UP)
DEF FW_TCP_IN = 65538         # one whole frame
DEF FW_TCP_OUT = 65536        # queries queued per connection (a full pipe fits: 256 x 286)
DEF FW_TCP_QMAX = 288         # the longest query we send, with its length prefix
DEF FW_TCP_SWEEP_NS = 100000000
DEF FW_OUTQ = 64              # UDP client answers queued for one sendmmsg
DEF FW_OUTB = 1232            # ... each at most this long (longer ones: sendto at once)

# epoll data of an upstream socket: FWD_TAG | fd << 24 | flight slot (checked before
# LISTENER_TAG); of an upstream TCP connection: FWD_TAG | FWC_TAG | gen << 24 | index
cdef uint64_t FWD_TAG = (<uint64_t>1) << 62
cdef uint64_t FWC_TAG = (<uint64_t>1) << 61

# why an attempt failed (for the errors plugin's text, fastdns.worker.neterr)
cdef enum:
    FE_NONE = 0
    FE_TIMEOUT = 1            # read udp: i/o timeout
    FE_READ = 2               # read udp: errno
    FE_DIAL = 3               # dial udp: errno (socket/connect)
    FE_WRITE = 4              # write udp: errno
    FE_PORTS = 5              # no upstream socket left (limit)
    FE_CONCURRENT = 6         # REFUSED: max_concurrent waiting clients
    FE_PENDING = 7            # REFUSED: UPSTREAM_MAX_PENDING waiting clients (the worker's)
    FE_EOF = 8                # read tcp: EOF (the upstream closed the connection)
    FE_FRAME = 9              # read tcp: a frame too short to be a DNS message


cdef struct FwUp:
    sockaddr_storage addr
    socklen_t alen
    int flag                  # its index in the block's health flags
    long ctr                  # its counters in the row (fastdns.stats.forward_offset); -1: none
    uint32_t fails            # consecutive failures (this worker)
    uint64_t down_until       # ns: not tried first before then
    int conn[FW_TCP_PER_UP]   # its TCP connections (FwState.conns index, -1: none) ...
    uint32_t conn_gen[FW_TCP_PER_UP]  # ... while their generation is still this

cdef struct FwZones:
    int n
    uint16_t len[FW_MAX_ZONES]
    uint8_t name[FW_MAX_ZONES][256]

cdef struct FwGroup:
    uint8_t zone[256]
    uint16_t zlen
    FwZones excepts
    bint everything           # "." without except: every name
    bint python               # tls: its queries go to Python
    bint tcp                  # force_tcp: every query over TCP
    bint prefer_udp           # TCP clients' queries over UDP too
    bint caps                 # use_caps_for_id: random case in the name sent over UDP (0x20)
    sockaddr_storage src      # source_address (port 0: the kernel's pick); family 0: none
    socklen_t srclen
    int policy                # 0 random, 1 round_robin, 2 sequential
    uint32_t rr
    int nups
    FwUp ups[FW_MAX_UPS]
    uint32_t max_fails
    uint64_t down_ns
    uint64_t timeout_ns
    uint64_t tcp_timeout_ns   # read_timeout + UPSTREAM_TCP_SLACK
    uint64_t expire_ns        # an idle TCP connection is closed after this
    uint64_t max_age_ns       # no new queries on a TCP connection older than this (0: none)
    int max_idle              # idle TCP connections kept per upstream (0: no limit)
    uint32_t failover         # rcodes that move on to the next upstream (bit per rcode)
    uint32_t max_concurrent   # 0: no limit
    uint32_t inflight         # waiting clients (this worker)
    long waiting              # its F_WAITING gauge in the counter rows (-1: none)

cdef struct FwCache:          # the block's cache policy (fastdns.worker.cachefill)
    bint on
    bint everywhere
    FwZones zones
    FwZones no_success
    FwZones no_denial
    bint success_off          # capacity 0
    bint denial_off
    uint32_t success_ttl
    uint32_t success_minttl
    uint32_t denial_ttl
    uint32_t denial_minttl
    uint32_t servfail_ttl
    bint stale                # serve_stale: SERVFAIL is not cached

cdef struct FwBlock:
    int refs                  # 1 while installed + 1 per flight using it
    int block
    int stage                 # the forward stage (misses handed to Python start there)
    int src                   # metrics source id (forward)
    uint8_t cache_ns
    bint shuffle
    bint minimal
    bint log
    uint16_t bufsize
    uint16_t nsid_len
    uint8_t nsid[512]
    uint8_t health[FW_MAX_FLAGS]
    int ngroups
    FwGroup groups[FW_MAX_GROUPS]
    FwCache cache

cdef struct FwWaiter:
    int next
    int li
    uint64_t token            # a TCP client's connection (Engine.tcp_send's token), 0: UDP
    socklen_t alen
    sockaddr_storage addr
    uint64_t t0
    uint16_t plen
    uint8_t pkt[FW_QBUF]

cdef struct FwFlight:
    bint used
    bint exhausted            # every upstream failed where no reply could be written
    FwBlock* fb
    int group
    uint8_t key[256]          # lower-cased qname
    uint8_t raw[256]          # the first asker's spelling (sent upstream)
    uint8_t sent_name[256]    # the spelling the current UDP attempt sent (0x20: its case)
    uint16_t klen
    uint16_t qtype
    uint16_t qclass
    uint8_t do_bit
    bint tcp0                 # asked over TCP at first (part of the flight's key)
    bint tcp                  # the current attempt goes over TCP
    bint fresh_retry          # retried once on a new connection after a reused one broke
    int conn                  # its TCP connection (-1: none) ...
    int pipe                  # ... and the ID's low byte there
    uint16_t qflags           # RD / CD of the first asker
    uint8_t order[FW_MAX_UPS]
    int norder
    int pos                   # next index in order
    int cur                   # upstream being asked (-1 none)
    int fd
    uint16_t qid
    uint64_t sent
    uint64_t deadline
    int heap_pos              # -1: not in the timeout heap
    int hnext                 # hash chain
    uint32_t hash
    int waiters
    int nwait
    int err_kind              # FE_*
    int err_errno
    int err_up
    bint err_tcp
    sockaddr_storage err_local   # local address of the failed attempt (family 0: unknown)

cdef struct FwError:
    int block
    int rcode
    int group
    int up
    int kind
    int errnum
    bint tcp
    sockaddr_storage local
    uint16_t plen
    uint8_t pkt[FW_QBUF]

cdef struct FwConn:            # a persistent, pipelined TCP connection to one upstream
    int fd                    # -1: free
    uint32_t gen              # bumped when it closes (stale epoll events, FwUp.conn)
    bint connected
    bint writing              # EPOLLOUT armed
    bint dirty                # queries queued since the last flush
    bint retire               # no new queries; closed when the last one ends
    int inflight
    uint32_t answered
    uint64_t opened
    uint64_t last             # a query sent or an answer read
    uint64_t last_read
    uint64_t last_answer      # an answer of ours came (noise does not count)
    uint64_t expire_ns
    uint64_t max_age_ns
    int slots[FW_TCP_PIPE]    # the flight of each ID low byte (-1: free)
    uint8_t freep[FW_TCP_PIPE]
    int nfreep
    uint8_t* inb
    uint32_t inlen
    uint8_t* outb
    uint32_t outlen
    uint32_t outoff

cdef struct FwState:
    int cap                   # flights (= waiters) at most: limits.UPSTREAM_MAX_PENDING
    int max_sockets           # upstream sockets open at most: limits.UPSTREAM_PORTS
    int nsockets              # UDP sockets and TCP connections
    int max_tcp               # TCP connections at most: limits.UPSTREAM_TCP_CONNS
    int ntcp
    int ndirty
    uint64_t next_conn_sweep
    FwConn* conns
    uint64_t* ctr             # the worker's counter row (the F_WAITING gauges)
    int nq                    # UDP client answers queued (fw_queue_reply)
    int qfd[FW_OUTQ]
    mmsghdr qmsg[FW_OUTQ]
    iovec qiov[FW_OUTQ]
    sockaddr_storage qaddr[FW_OUTQ]
    uint8_t* qbuf             # FW_OUTQ x FW_OUTB
    FwFlight* flights
    int* ffree
    int nffree
    FwWaiter* waiters
    int* wfree
    int nwfree
    int* buckets
    uint32_t nbuckets
    int* heap
    int nheap
    uint8_t rnd[FW_RND]
    int rpos
    uint8_t* abuf             # one upstream answer
    uint8_t* body             # its stored body
    uint8_t* out              # one client answer
    FwBlock* installed[MAX_BLOCKS]
    int nerr
    FwError errs[FW_ERRORS]
    uint64_t stat[12]         # sent, answered, ignored, timeouts, servfail, coalesced,
                              # refused, to_python, lost_errors, tcp_sent, tcp_opened,
                              # tcp_closed


cdef FwState* fw_new(int cap, int max_sockets, int max_tcp) noexcept nogil:
    cdef FwState* f = <FwState*>calloc(1, sizeof(FwState))
    cdef int i
    if f == NULL:
        return NULL
    f.cap = cap
    f.max_sockets = max_sockets
    f.max_tcp = max_tcp
    f.conns = <FwConn*>calloc(max_tcp, sizeof(FwConn))
    f.flights = <FwFlight*>calloc(cap, sizeof(FwFlight))
    f.ffree = <int*>malloc(cap * sizeof(int))
    f.waiters = <FwWaiter*>calloc(cap, sizeof(FwWaiter))
    f.wfree = <int*>malloc(cap * sizeof(int))
    f.nbuckets = 1
    while f.nbuckets < <uint32_t>(2 * cap):
        f.nbuckets <<= 1
    f.buckets = <int*>malloc(f.nbuckets * sizeof(int))
    f.heap = <int*>malloc(cap * sizeof(int))
    f.abuf = <uint8_t*>malloc(65536)
    f.body = <uint8_t*>malloc(70000)
    f.out = <uint8_t*>malloc(65536)
    f.qbuf = <uint8_t*>malloc(FW_OUTQ * FW_OUTB)
    if not (f.flights and f.ffree and f.waiters and f.wfree and f.buckets and f.heap
            and f.abuf and f.body and f.out and f.conns and f.qbuf):
        fw_free(f)
        return NULL
    for i in range(cap):
        f.ffree[i] = cap - 1 - i
        f.wfree[i] = cap - 1 - i
        f.flights[i].fd = -1
        f.flights[i].heap_pos = -1
    f.nffree = cap
    f.nwfree = cap
    for i in range(<int>f.nbuckets):
        f.buckets[i] = -1
    for i in range(max_tcp):
        f.conns[i].fd = -1
    f.rpos = FW_RND
    return f


cdef void fw_release(FwBlock* fb) noexcept nogil:
    fb.refs -= 1
    if fb.refs <= 0:
        free(fb)


cdef void fw_free(FwState* f) noexcept nogil:
    cdef int i
    if f == NULL:
        return
    if f.flights != NULL:
        for i in range(f.cap):
            if f.flights[i].used:
                if f.flights[i].fd >= 0:
                    close(f.flights[i].fd)
                fw_release(f.flights[i].fb)
    for i in range(MAX_BLOCKS):
        if f.installed[i] != NULL:
            fw_release(f.installed[i])
    if f.conns != NULL:
        for i in range(f.max_tcp):
            if f.conns[i].fd >= 0:
                fw_conn_close(f, i)
    free(f.conns)
    free(f.flights)
    free(f.ffree)
    free(f.waiters)
    free(f.wfree)
    free(f.buckets)
    free(f.heap)
    free(f.abuf)
    free(f.body)
    free(f.out)
    free(f.qbuf)
    free(f)


cdef uint16_t fw_random16(FwState* f) noexcept nogil:
    """16 bits from the kernel's CSPRNG (getrandom, FW_RND bytes at a time)."""
    cdef ssize_t got
    cdef size_t have = 0
    cdef uint64_t x
    if f.rpos + 2 > FW_RND:
        while have < FW_RND:
            got = getrandom(f.rnd + have, FW_RND - have, 0)
            if got < 0 and errno == EINTR:
                continue
            if got <= 0:
                break
            have += got
        while have < FW_RND:        # no getrandom (pre-3.17 kernel): never reached on Linux
            x = st_now_ns() * <uint64_t>0x9E3779B97F4A7C15
            f.rnd[have] = <uint8_t>(x >> 56)
            have += 1
        f.rpos = 0
    f.rpos += 2
    return (<uint16_t>f.rnd[f.rpos - 2] << 8) | f.rnd[f.rpos - 1]


cdef bint fw_zone_in(const FwZones* z, const uint8_t* key, uint16_t klen) noexcept nogil:
    cdef int i
    for i in range(z.n):
        if is_subdomain(key, klen, z.name[i], z.len[i]):
            return True
    return False


cdef int fw_route(FwBlock* fb, QueryInfo* q) noexcept nogil:
    """The group (forward directive) of ``q``'s name, -1: none (CoreDNS's
    isAllowedDomain: FROM itself is forwarded even when excepted)."""
    cdef int i
    cdef FwGroup* g
    for i in range(fb.ngroups):
        g = &fb.groups[i]
        if g.everything:
            return i
        if not is_subdomain(q.key, q.name_len, g.zone, g.zlen):
            continue
        if (q.name_len == g.zlen and memcmp(q.key, g.zone, g.zlen) == 0) \
                or not fw_zone_in(&g.excepts, q.key, q.name_len):
            return i
    return -1


cdef uint32_t fw_hash(const uint8_t* key, uint16_t klen, uint16_t qtype, uint16_t qclass,
                      uint8_t do_bit, int block, bint tcp) noexcept nogil:
    cdef uint32_t h = <uint32_t>2166136261
    cdef int i
    for i in range(klen):
        h = (h ^ key[i]) * <uint32_t>16777619
    h = (h ^ qtype) * <uint32_t>16777619
    h = (h ^ qclass) * <uint32_t>16777619
    h = (h ^ do_bit) * <uint32_t>16777619
    h = (h ^ <uint32_t>block) * <uint32_t>16777619
    h = (h ^ (1 if tcp else 0)) * <uint32_t>16777619
    return h


cdef int fw_find(FwState* f, FwBlock* fb, QueryInfo* q, uint32_t h, bint tcp) noexcept nogil:
    cdef int k = f.buckets[h & (f.nbuckets - 1)]
    cdef FwFlight* fl
    while k >= 0:
        fl = &f.flights[k]
        if fl.hash == h and fl.fb.block == fb.block and fl.klen == q.name_len \
                and fl.qtype == q.qtype and fl.qclass == q.qclass \
                and fl.do_bit == (1 if q.do_bit else 0) and fl.tcp0 == tcp \
                and memcmp(fl.key, q.key, fl.klen) == 0:
            return k
        k = fl.hnext
    return -1


# -- the timeout heap (flight slots by deadline) -------------------------------------

cdef void fw_heap_swap(FwState* f, int a, int b) noexcept nogil:
    cdef int t = f.heap[a]
    f.heap[a] = f.heap[b]
    f.heap[b] = t
    f.flights[f.heap[a]].heap_pos = a
    f.flights[f.heap[b]].heap_pos = b


cdef void fw_heap_up(FwState* f, int i) noexcept nogil:
    cdef int p
    while i > 0:
        p = (i - 1) >> 1
        if f.flights[f.heap[p]].deadline <= f.flights[f.heap[i]].deadline:
            break
        fw_heap_swap(f, i, p)
        i = p


cdef void fw_heap_down(FwState* f, int i) noexcept nogil:
    cdef int l, m
    while True:
        l = 2 * i + 1
        if l >= f.nheap:
            break
        m = l
        if l + 1 < f.nheap and f.flights[f.heap[l + 1]].deadline < f.flights[f.heap[l]].deadline:
            m = l + 1
        if f.flights[f.heap[i]].deadline <= f.flights[f.heap[m]].deadline:
            break
        fw_heap_swap(f, i, m)
        i = m


cdef void fw_heap_remove(FwState* f, int slot) noexcept nogil:
    cdef int i = f.flights[slot].heap_pos
    if i < 0:
        return
    f.nheap -= 1
    if i != f.nheap:
        f.heap[i] = f.heap[f.nheap]
        f.flights[f.heap[i]].heap_pos = i
        fw_heap_down(f, i)
        fw_heap_up(f, i)
    f.flights[slot].heap_pos = -1


cdef void fw_heap_set(FwState* f, int slot, uint64_t deadline) noexcept nogil:
    fw_heap_remove(f, slot)
    f.flights[slot].deadline = deadline
    f.heap[f.nheap] = slot
    f.flights[slot].heap_pos = f.nheap
    f.nheap += 1
    fw_heap_up(f, f.nheap - 1)


# -- flights -----------------------------------------------------------------------------

cdef void fw_close_attempt(FwState* f, FwFlight* fl) noexcept nogil:
    """End the current attempt: its UDP socket closed, or its place on a TCP
    connection given back (the connection closed if it was retiring, or if its
    upstream keeps more idle ones than ``max_idle_conns``)."""
    cdef FwConn* c
    if fl.fd >= 0:
        close(fl.fd)                # also leaves the epoll set
        fl.fd = -1
        f.nsockets -= 1
    if fl.conn >= 0:
        c = &f.conns[fl.conn]
        c.slots[fl.pipe] = -1
        c.freep[c.nfreep] = <uint8_t>fl.pipe
        c.nfreep += 1
        c.inflight -= 1
        if c.inflight == 0 and (c.retire or fw_idle_surplus(f, fl)):
            fw_conn_close(f, fl.conn)
        fl.conn = -1
        fl.pipe = -1


cdef void fw_free_flight(FwState* f, int slot) noexcept nogil:
    cdef FwFlight* fl = &f.flights[slot]
    cdef int* link = &f.buckets[fl.hash & (f.nbuckets - 1)]
    cdef int w, nxt
    while link[0] >= 0 and link[0] != slot:
        link = &f.flights[link[0]].hnext
    if link[0] == slot:
        link[0] = fl.hnext
    fw_heap_remove(f, slot)
    fw_close_attempt(f, fl)
    w = fl.waiters
    while w >= 0:
        nxt = f.waiters[w].next
        f.wfree[f.nwfree] = w
        f.nwfree += 1
        w = nxt
    fl.fb.groups[fl.group].inflight -= fl.nwait
    if fl.fb.groups[fl.group].waiting >= 0 and f.ctr != NULL:
        f.ctr[fl.fb.groups[fl.group].waiting] -= fl.nwait
    fw_release(fl.fb)
    fl.used = False
    fl.fb = NULL
    f.ffree[f.nffree] = slot
    f.nffree += 1


cdef void fw_order(Engine e, FwFlight* fl, uint64_t now) noexcept nogil:
    """The upstreams to try, in policy order, healthy ones first (all if none is)."""
    cdef FwGroup* g = &fl.fb.groups[fl.group]
    cdef int n = g.nups, i, j, k, t
    cdef uint8_t all_[FW_MAX_UPS]
    cdef FwUp* u
    for i in range(n):
        all_[i] = i
    if n > 1:
        if g.policy == 0:
            for i in range(n - 1, 0, -1):
                j = <int>(lb_next(&e.rng) % <uint64_t>(i + 1))
                t = all_[i]
                all_[i] = all_[j]
                all_[j] = t
        elif g.policy == 1:
            g.rr = (g.rr + 1) % n
            for i in range(n):
                all_[i] = (g.rr + i) % n
    k = 0
    for i in range(n):
        u = &g.ups[all_[i]]
        if n == 1 or (u.down_until <= now and (u.flag >= FW_MAX_FLAGS or fl.fb.health[u.flag])):
            fl.order[k] = all_[i]
            k += 1
    if k == 0:
        for i in range(n):
            fl.order[i] = all_[i]
        k = n
    fl.norder = k
    fl.pos = 0


cdef void fw_caps(FwState* f, FwFlight* fl) noexcept nogil:
    """fl.sent_name = the name with every letter's case drawn at random (draft-vixie-dnsext-
    dns0x20: each letter is a bit more an off-path forger must guess)."""
    cdef int i = 0, k, bits = 0, have = 0
    cdef uint8_t c
    memcpy(fl.sent_name, fl.key, fl.klen)
    while i < fl.klen and fl.sent_name[i]:
        for k in range(i + 1, i + 1 + fl.sent_name[i]):
            c = fl.sent_name[k]
            if 97 <= c <= 122:                      # a-z (the key is lower case)
                if have == 0:
                    bits = fw_random16(f)
                    have = 16
                if bits & 1:
                    fl.sent_name[k] = c - 32
                bits >>= 1
                have -= 1
        i += 1 + fl.sent_name[i]


cdef size_t fw_query(FwFlight* fl, uint8_t* m) noexcept nogil:
    """The query sent upstream (ID fl.qid, fl.sent_name's spelling, EDNS with DO)."""
    cdef size_t n
    st16(m, fl.qid)
    st16(m + 2, fl.qflags)
    st16(m + 4, 1)
    st16(m + 6, 0)
    st16(m + 8, 0)
    st16(m + 10, 1)
    memcpy(m + 12, fl.sent_name, fl.klen)
    n = 12 + fl.klen
    st16(m + n, fl.qtype)
    st16(m + n + 2, fl.qclass)
    n += 4
    m[n] = 0                                    # OPT: root, type 41, payload 1232
    st16(m + n + 1, 41)
    st16(m + n + 3, EDNS_UDP)
    m[n + 5] = 0
    m[n + 6] = 0
    st16(m + n + 7, 0x8000 if fl.do_bit else 0)
    st16(m + n + 9, 0)
    return n + 11


cdef bint fw_attempt(Engine e, int slot, uint64_t now) noexcept nogil:
    """Send the flight to its next upstream (False: none is left)."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwFlight* fl = &f.flights[slot]
    cdef FwGroup* g = &fl.fb.groups[fl.group]
    cdef FwUp* u
    cdef int fd, ui
    cdef uint8_t* m = f.out
    cdef size_t n
    cdef epoll_event ev
    fw_close_attempt(f, fl)
    while fl.pos < fl.norder:
        ui = fl.order[fl.pos]
        fl.pos += 1
        u = &g.ups[ui]
        fl.cur = ui
        if fl.tcp:
            if not fw_tcp_send(e, slot, u, now):
                continue                            # fw_fail said why
            fw_heap_set(f, slot, now + g.tcp_timeout_ns)
            fl.sent = now
            f.stat[0] += 1
            f.stat[9] += 1
            if u.ctr >= 0:
                e.ctr[u.ctr + F_REQ] += 1
            return True
        if f.nsockets >= f.max_sockets:
            fw_fail(e, fl, FE_PORTS, 0, now)
            continue
        fd = socket(u.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:
            fw_fail(e, fl, FE_DIAL, errno, now)
            continue
        f.nsockets += 1
        fl.fd = fd
        if (g.srclen and bind(fd, <sockaddr*>&g.src, g.srclen) != 0) \
                or connect(fd, <sockaddr*>&u.addr, u.alen) != 0:
            fw_fail(e, fl, FE_DIAL, errno, now)
            continue
        fl.qid = fw_random16(f)
        if g.caps:
            fw_caps(f, fl)
        else:
            memcpy(fl.sent_name, fl.raw, fl.klen)
        n = fw_query(fl, m)
        if send(fd, m, n, MSG_DONTWAIT | MSG_NOSIGNAL) != <ssize_t>n:
            fw_fail(e, fl, FE_WRITE, errno, now)
            continue
        ev.events = EPOLLIN
        ev.data.u64 = FWD_TAG | (<uint64_t>fd << 24) | <uint64_t>slot
        if epoll_ctl(e.epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
            fw_fail(e, fl, FE_DIAL, errno, now)
            continue
        fl.sent = now
        fw_heap_set(f, slot, now + g.timeout_ns)
        f.stat[0] += 1
        if u.ctr >= 0:
            e.ctr[u.ctr + F_REQ] += 1
        return True
    return False


cdef void fw_fail(Engine e, FwFlight* fl, int kind, int errnum, uint64_t now) noexcept nogil:
    """The current attempt failed: count it against the upstream, close its socket."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwGroup* g = &fl.fb.groups[fl.group]
    cdef FwUp* u
    cdef socklen_t alen = sizeof(sockaddr_storage)
    cdef int fd = fl.fd if fl.conn < 0 else f.conns[fl.conn].fd
    fl.err_kind = kind
    fl.err_errno = errnum
    fl.err_up = fl.cur
    fl.err_tcp = fl.tcp
    fl.err_local.ss_family = 0
    if fd >= 0 and getsockname(fd, <sockaddr*>&fl.err_local, &alen) != 0:
        fl.err_local.ss_family = 0
    fw_close_attempt(f, fl)
    if fl.cur >= 0 and kind != FE_PORTS:
        u = &g.ups[fl.cur]
        u.fails += 1
        if g.max_fails and u.fails >= g.max_fails:
            u.down_until = now + g.down_ns


cdef uint64_t fw_waiting(Engine e, FwGroup* g) noexcept nogil:
    """Clients waiting on directive ``g`` in every worker (its F_WAITING gauge summed
    over the counter rows), or in this one when the rows are not attached."""
    cdef uint64_t total = 0
    cdef int r
    if g.waiting < 0 or e.allctr == NULL:
        return g.inflight
    for r in range(e.nrows):
        total += e.allctr[<size_t>r * NCOUNTERS + g.waiting]
    return total


cdef long fw_start(Engine e, BConf* B, Stage* S, QueryInfo* q, const uint8_t* pkt, size_t n,
                   const sockaddr_storage* peer, int li, uint64_t token, uint8_t* out,
                   size_t cap) noexcept nogil:
    """Take a client's miss at the forward stage (``token``: a TCP client's connection,
    0: UDP): A_TAKEN (answered later), A_MISS (Python's), or a REFUSED answer (over a
    limit).  Upstream it goes over TCP with ``force_tcp``, or when the client asked
    over TCP (unless ``prefer_udp``), as CoreDNS's forward does."""
    cdef bint tcp
    cdef FwState* f = <FwState*>e.fw
    cdef FwBlock* fb = <FwBlock*>S.fwd
    cdef int gi, slot, w
    cdef uint32_t h
    cdef FwFlight* fl
    cdef FwWaiter* wt
    cdef FwGroup* g
    cdef uint64_t now
    if f == NULL or fb == NULL or peer == NULL or q.qtype == 13 or n > FW_QBUF:
        return A_MISS                # HINFO: the loop plugin's probes are seen in Python
    gi = fw_route(fb, q)
    if gi < 0 or fb.groups[gi].python:
        return A_MISS
    g = &fb.groups[gi]
    tcp = g.tcp or (token != 0 and not g.prefer_udp)
    h = fw_hash(q.key, q.name_len, q.qtype, q.qclass, 1 if q.do_bit else 0, fb.block, tcp)
    slot = fw_find(f, fb, q, h, tcp)
    if slot < 0 and g.max_concurrent and fw_waiting(e, g) >= g.max_concurrent:
        f.stat[6] += 1
        if g.waiting >= 0:
            e.ctr[g.waiting - F_WAITING + F_MC_REJECT] += 1
        fw_error(f, fb.block, gi, -1, FE_CONCURRENT, 0, False, NULL, 5, pkt, n)
        return finish_len(emit_rcode(q, 5, 0, out, cap))
    if f.nwfree == 0 or (slot < 0 and f.nffree == 0):
        f.stat[6] += 1
        fw_error(f, fb.block, gi, -1, FE_PENDING, 0, False, NULL, 5, pkt, n)
        return finish_len(emit_rcode(q, 5, 0, out, cap))
    now = st_now_ns()
    f.nwfree -= 1
    w = f.wfree[f.nwfree]
    wt = &f.waiters[w]
    wt.li = li
    wt.token = token
    wt.alen = sizeof(sockaddr_in) if peer.ss_family == AF_INET else sizeof(sockaddr_in6)
    memcpy(&wt.addr, peer, wt.alen)
    wt.t0 = now
    wt.plen = <uint16_t>n
    memcpy(wt.pkt, pkt, n)
    g.inflight += 1
    if g.waiting >= 0:
        f.ctr = e.ctr
        e.ctr[g.waiting] += 1
    if slot >= 0:
        fl = &f.flights[slot]
        wt.next = fl.waiters
        fl.waiters = w
        fl.nwait += 1
        f.stat[5] += 1
        return A_TAKEN
    f.nffree -= 1
    slot = f.ffree[f.nffree]
    fl = &f.flights[slot]
    memset(fl, 0, sizeof(FwFlight))
    fl.used = True
    fl.fb = fb
    fb.refs += 1
    fl.group = gi
    fl.klen = q.name_len
    memcpy(fl.key, q.key, q.name_len)
    memcpy(fl.raw, q.raw, q.name_len)
    fl.qtype = q.qtype
    fl.qclass = q.qclass
    fl.do_bit = 1 if q.do_bit else 0
    fl.qflags = q.flags & (F_RD | F_CD)
    fl.tcp0 = tcp
    fl.tcp = tcp
    fl.conn = -1
    fl.pipe = -1
    fl.cur = -1
    fl.fd = -1
    fl.heap_pos = -1
    fl.hash = h
    fl.hnext = f.buckets[h & (f.nbuckets - 1)]
    f.buckets[h & (f.nbuckets - 1)] = slot
    wt.next = -1
    fl.waiters = w
    fl.nwait = 1
    fw_order(e, fl, now)
    if not fw_attempt(e, slot, now):
        # nothing could be sent: the waiters get SERVFAIL from the next sweep (with the
        # GIL: the errors plugin and the query log are Python)
        fl.exhausted = True
        fw_heap_set(f, slot, now)
    return A_TAKEN


# -- answers --------------------------------------------------------------------------------

cdef bint fw_matches(FwFlight* fl, const uint8_t* m, size_t n) noexcept nogil:
    """A response (QR, QUERY, one question) to exactly the question asked."""
    cdef size_t end = 12 + fl.klen
    if n < end + 4 or ld16(m) != fl.qid or not (m[2] & 0x80) or (m[2] & 0x78) or ld16(m + 4) != 1:
        return False
    if fl.fb.groups[fl.group].caps and not fl.tcp:
        if memcmp(m + 12, fl.sent_name, fl.klen) != 0:
            return False                    # 0x20: the case must come back as sent
    elif name_eq_ci(m + 12, fl.key, fl.klen) != 1:
        return False
    return ld16(m + end) == fl.qtype and ld16(m + end + 2) == fl.qclass


cdef void fw_set_ttls(uint8_t* body, uint32_t ttl) noexcept nogil:
    cdef BodyHdr* hdr = <BodyHdr*>body
    cdef RRMeta* meta = <RRMeta*>(body + sizeof(BodyHdr))
    cdef uint8_t* blob = body + sizeof(BodyHdr) + hdr.nrr * sizeof(RRMeta)
    cdef int k
    for k in range(hdr.nrr):
        st32(blob + meta[k].ttl_off, ttl)
    if hdr.nrr:
        hdr.min_ttl = ttl


cdef int fw_classify(const uint8_t* body, uint32_t* ttl_out) noexcept nogil:
    """fastdns.worker.cachefill.classify: SC_KIND_* or -1 (not cacheable) and the TTL."""
    cdef const BodyHdr* hdr = <const BodyHdr*>body
    cdef const RRMeta* meta = <const RRMeta*>(body + sizeof(BodyHdr))
    cdef const uint8_t* blob = body + sizeof(BodyHdr) + hdr.nrr * sizeof(RRMeta)
    cdef const uint8_t* p
    cdef int k, kind, nr = hdr.an + hdr.ns
    cdef bint soa = False, ns_auth = False
    cdef uint16_t rtype
    cdef uint32_t ttl, minimum, low = FW_MAX_MSG_TTL
    ttl_out[0] = 0
    if hdr.rcode == 2:
        return SC_KIND_SERVFAIL
    if hdr.rcode != 0 and hdr.rcode != 3:
        return -1
    if nr > hdr.nrr:
        nr = hdr.nrr
    for k in range(nr):
        rtype = ld16(blob + meta[k].ttl_off - 4)
        if rtype == T_SOA:
            soa = True
        elif rtype == T_NS and k >= hdr.an:
            ns_auth = True
    if hdr.rcode == 0 and (hdr.an > 0 or (not soa and ns_auth)):
        kind = SC_KIND_SUCCESS
    else:
        kind = SC_KIND_DENIAL
    if hdr.an + hdr.ns == 0:
        ttl_out[0] = FW_FAIL_SAFE_TTL
        return kind
    for k in range(nr):
        p = blob + meta[k].ttl_off
        rtype = ld16(p - 4)
        ttl = ld32(p)
        if kind == SC_KIND_SUCCESS:
            if ttl < low:
                low = ttl
        elif rtype == T_SOA:
            minimum = ld32(blob + meta[k].end - 4)
            if minimum < low:
                low = minimum
            if k >= hdr.an and ttl < low:
                low = ttl
    ttl_out[0] = low
    return kind


cdef inline uint32_t fw_clamp(uint32_t v, uint32_t lo, uint32_t hi) noexcept nogil:
    if v < lo:
        v = lo
    return hi if v > hi else v


cdef void fw_store(Engine e, FwFlight* fl, uint8_t* body, size_t blen) noexcept nogil:
    """Cache the answer under the block's policy (TTLs in ``body`` capped as stored)."""
    cdef FwCache* c = &fl.fb.cache
    cdef uint32_t ttl
    cdef int kind
    if not c.on or e.cache == NULL or fl.qclass != 1:
        return
    if not c.everywhere and not fw_zone_in(&c.zones, fl.key, fl.klen):
        return
    kind = fw_classify(body, &ttl)
    if kind == SC_KIND_SUCCESS:
        if c.success_off or fw_zone_in(&c.no_success, fl.key, fl.klen):
            return
        ttl = fw_clamp(ttl, c.success_minttl, c.success_ttl)
    elif kind == SC_KIND_DENIAL:
        if c.denial_off or fw_zone_in(&c.no_denial, fl.key, fl.klen):
            return
        ttl = fw_clamp(ttl, c.denial_minttl, c.denial_ttl)
    elif kind == SC_KIND_SERVFAIL:
        if c.servfail_ttl < 1:
            return
        ttl = c.servfail_ttl
    else:
        return
    if ttl <= 0:
        return
    if kind != SC_KIND_SERVFAIL:
        fw_set_ttls(body, ttl)
    cache_put(e.cache, fl.key, fl.klen, fl.qtype, 1, fl.do_bit | (fl.fb.cache_ns << 1),
              cache_now(), body, blen, ttl, kind)


cdef void fw_reply(Engine e, FwFlight* fl, FwWaiter* wt, const uint8_t* body, size_t blen,
                   int rcode) except *:
    """Write one waiter's answer (``body``, or an empty ``rcode`` answer when NULL)."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwBlock* fb = fl.fb
    cdef QueryInfo q
    cdef size_t limit
    cdef long r = 0
    cdef int fd
    cdef uint64_t* sect
    cdef uint64_t now
    cdef uint8_t* m = f.out + 2             # room for a TCP client's length prefix
    cdef bint tcp = wt.token != 0
    cdef int ci
    if parse_query(wt.pkt, wt.plen, &q) != W_OK:
        return
    if tcp:
        limit = MAX_MSG
    elif q.edns:
        limit = q.udp_size if q.udp_size < EDNS_UDP else EDNS_UDP
        if fb.bufsize and limit > fb.bufsize:
            limit = fb.bufsize
    else:
        limit = MIN_UDP
    if body != NULL:
        r = <long>emit_body(&q, body, blen, 0, limit, m, 65533)
    if r <= 0:
        r = <long>emit_rcode(&q, rcode if body == NULL else 2, 0, m, 65533)
    if r <= 0:
        return
    if fb.minimal:
        r = minimize(m, r)
    if fb.nsid_len and q.nsid:
        r = add_option(m, r, limit, 3, fb.nsid, fb.nsid_len)
    if fb.shuffle:
        lb_shuffle(m, r, &e.rng)
    if tcp:
        ci = <int>(wt.token & 0xFFFFFFFF)
        if e.conns == NULL or not 0 <= ci < e.max_conns or e.conns[ci].fd < 0 \
                or e.conns[ci].serial != <uint32_t>(wt.token >> 32):
            return                          # the client went away meanwhile
        st16(f.out, r)
        if not e._tcp_queue(ci, f.out, r + 2):
            return
        e._tcp_flush(ci)
    else:
        if not (0 <= wt.li < MAX_LISTENERS) or e.udp_fd[wt.li] < 0:
            return
        fd = e.udp_fd[wt.li]
        if r <= FW_OUTB:
            fw_queue_reply(e, fd, m, r, &wt.addr, wt.alen)      # sent by fw_flush_replies
        elif sendto(fd, m, r, MSG_DONTWAIT, <sockaddr*>&wt.addr, wt.alen) != r:
            e.ctr[C_SEND_ERR] += 1
            return
    e.ctr[C_RCODE + (m[3] & 0xF)] += 1
    e.ctr[C_RESP_BYTES] += r
    if not e.detail and not (fb.log and e.logging):
        return
    now = st_now_ns()
    if e.detail:
        sect = st_block(e.ctr, fb.block)
        st_response(sect, fb.src, m[3] & 0xF, r, tcp)
        st_duration(sect, now - wt.t0)
    if fb.log and e.logging:
        e.log_sink.append((wt.li, PyBytes_FromStringAndSize(<char*>wt.pkt, wt.plen),
                           PyBytes_FromStringAndSize(<char*>m, r), _address(&wt.addr),
                           (now - wt.t0) / 1e9, tcp))


cdef void fw_queue_reply(Engine e, int fd, const uint8_t* m, long r,
                         const sockaddr_storage* addr, socklen_t alen) noexcept nogil:
    """Queue one UDP client answer; they leave together by sendmmsg (fw_flush_replies,
    at the end of each batch of events and before the loop polls)."""
    cdef FwState* f = <FwState*>e.fw
    cdef int k
    if f.nq == FW_OUTQ:
        fw_flush_replies(e)
    k = f.nq
    f.nq += 1
    memcpy(f.qbuf + k * FW_OUTB, m, r)
    memcpy(&f.qaddr[k], addr, alen)
    f.qfd[k] = fd
    f.qiov[k].iov_base = f.qbuf + k * FW_OUTB
    f.qiov[k].iov_len = r
    memset(&f.qmsg[k], 0, sizeof(mmsghdr))
    f.qmsg[k].msg_hdr.msg_name = &f.qaddr[k]
    f.qmsg[k].msg_hdr.msg_namelen = alen
    f.qmsg[k].msg_hdr.msg_iov = &f.qiov[k]
    f.qmsg[k].msg_hdr.msg_iovlen = 1


cdef void fw_flush_replies(Engine e) noexcept nogil:
    """Send the queued UDP client answers: one sendmmsg per run of the same socket."""
    cdef FwState* f = <FwState*>e.fw
    cdef int i = 0, j, r
    if f == NULL:
        return
    while i < f.nq:
        j = i + 1
        while j < f.nq and f.qfd[j] == f.qfd[i]:
            j += 1
        while i < j:
            r = sendmmsg(f.qfd[i], &f.qmsg[i], j - i, MSG_DONTWAIT)
            if r < 0 and errno == EINTR:
                continue
            if r <= 0:
                e.ctr[C_SEND_ERR] += j - i      # a full socket buffer: dropped, counted
                break
            i += r
        i = j
    f.nq = 0


cdef void fw_to_python(Engine e, int slot, size_t n) except *:
    """Hand every waiter of a flight to Python as a miss at the forward stage, with the
    upstream's answer (``n`` bytes in abuf: it has TC, or more than a stored body holds)
    and who gave it: the Python forwarder goes on from there (the same upstream over
    TCP, or the answer relayed), then drop the flight."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwFlight* fl = &f.flights[slot]
    cdef int w = fl.waiters
    cdef FwWaiter* wt
    hint = ("answer", PyBytes_FromStringAndSize(<char*>f.abuf, n), fl.group, fl.cur)
    while w >= 0:
        wt = &f.waiters[w]
        sink = e.tcp_misses if wt.token else e.udp_misses
        if sink is not None:
            e.ctr[C_TO_PYTHON] += 1
            f.stat[7] += 1
            if wt.token:
                sink.append((wt.li, PyBytes_FromStringAndSize(<char*>wt.pkt, wt.plen),
                             _address(&wt.addr), wt.token, fl.fb.stage, hint))
            else:
                sink.append((wt.li, PyBytes_FromStringAndSize(<char*>wt.pkt, wt.plen),
                             _address(&wt.addr), fl.fb.stage, hint))
        else:
            fw_reply(e, fl, wt, NULL, 0, 2)
        w = wt.next
    fw_free_flight(f, slot)


cdef void fw_give_up(Engine e, int slot) except *:
    """Every upstream failed: SERVFAIL to every waiter (cached ``servfail`` seconds),
    and the failure kept for the errors plugin."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwFlight* fl = &f.flights[slot]
    cdef FwCache* c = &fl.fb.cache
    cdef int w = fl.waiters
    cdef FwWaiter* wt
    cdef QueryInfo q
    cdef size_t n, blen = 0
    cdef FwError* er
    f.stat[4] += 1
    if c.on and not c.stale and c.servfail_ttl >= 1 and e.cache != NULL and fl.qclass == 1 \
            and (c.everywhere or fw_zone_in(&c.zones, fl.key, fl.klen)) \
            and parse_query(f.waiters[w].pkt, f.waiters[w].plen, &q) == W_OK:
        n = emit_rcode(&q, 2, 0, f.abuf, 65535)
        if n and body_from_wire(f.abuf, n, f.body, 70000, &blen) == W_OK:
            cache_put(e.cache, fl.key, fl.klen, fl.qtype, 1, fl.do_bit | (fl.fb.cache_ns << 1),
                      cache_now(), f.body, blen, c.servfail_ttl, SC_KIND_SERVFAIL)
    while w >= 0:
        wt = &f.waiters[w]
        fw_reply(e, fl, wt, NULL, 0, 2)
        fw_error(f, fl.fb.block, fl.group, fl.err_up, fl.err_kind, fl.err_errno, fl.err_tcp,
                 &fl.err_local, 2, wt.pkt, wt.plen)
        w = wt.next
    fw_free_flight(f, slot)


cdef void fw_error(FwState* f, int block, int group, int up, int kind, int errnum, bint tcp,
                   const sockaddr_storage* local, int rcode, const uint8_t* pkt,
                   size_t plen) noexcept nogil:
    """Keep a failure answered to a client for the errors plugin (take_forward_errors)."""
    cdef FwError* er
    if f.nerr >= FW_ERRORS or plen > FW_QBUF:
        f.stat[8] += 1
        return
    er = &f.errs[f.nerr]
    f.nerr += 1
    er.block = block
    er.group = group
    er.up = up
    er.kind = kind
    er.errnum = errnum
    er.tcp = tcp
    er.rcode = rcode
    if local != NULL:
        memcpy(&er.local, local, sizeof(sockaddr_storage))
    else:
        er.local.ss_family = 0
    er.plen = <uint16_t>plen
    memcpy(er.pkt, pkt, plen)


cdef void fw_answered(Engine e, int slot, size_t n, uint64_t now) except *:
    cdef FwState* f = <FwState*>e.fw
    cdef FwFlight* fl = &f.flights[slot]
    cdef FwGroup* g = &fl.fb.groups[fl.group]
    cdef FwUp* u = &g.ups[fl.cur]
    cdef int rcode = f.abuf[3] & 0xF, w
    cdef size_t blen = 0
    f.stat[1] += 1
    if u.ctr >= 0:
        e.ctr[u.ctr + F_RCODE + rcode] += 1
        e.ctr[u.ctr + F_DUR + st_dur_bucket(now - fl.sent)] += 1
        e.ctr[u.ctr + F_DUR_SUM] += now - fl.sent
    u.fails = 0
    u.down_until = 0
    fw_close_attempt(f, fl)
    if f.abuf[2] & 0x02 and not fl.tcp:     # TC: the same upstream again, over TCP
        fl.tcp = True
        fl.pos -= 1
        if not fw_attempt(e, slot, now):
            fw_give_up(e, slot)
        return
    if (g.failover >> rcode) & 1 and fl.pos < fl.norder:
        if fw_attempt(e, slot, now):
            return
        fw_give_up(e, slot)
        return
    if body_from_wire(f.abuf, n, f.body, 70000, &blen) != W_OK:
        fw_to_python(e, slot, n)            # more records than a body holds: relayed there
        return
    fw_store(e, fl, f.body, blen)
    w = fl.waiters
    while w >= 0:
        fw_reply(e, fl, &f.waiters[w], f.body, blen, 0)
        w = f.waiters[w].next
    fw_free_flight(f, slot)


cdef void fw_readable(Engine e, uint64_t tag, uint32_t events) except *:
    """An upstream socket became readable (or a TCP connection ready)."""
    cdef FwState* f = <FwState*>e.fw
    cdef int slot = <int>(tag & 0xFFFFFF)
    cdef int fd = <int>((tag >> 24) & 0xFFFFFFFF)
    cdef FwFlight* fl
    cdef ssize_t n
    cdef uint64_t now
    cdef int reads
    if f == NULL:
        return
    if tag & FWC_TAG:
        fw_conn_event(e, tag, events)
        return
    if slot >= f.cap:
        return
    fl = &f.flights[slot]
    if not fl.used or fl.fd != fd:
        return                              # ended earlier in this batch of events
    now = st_now_ns()
    for reads in range(64):         # an upstream that floods wrong answers cannot hold the loop
        n = recv(fd, f.abuf, 65536, MSG_DONTWAIT)
        if n < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                return
            fw_fail(e, fl, FE_READ, errno, now)     # ICMP: nothing listens there
            if not fw_attempt(e, slot, now):
                fw_give_up(e, slot)
            return
        if fw_matches(fl, f.abuf, n):
            fw_answered(e, slot, n, now)
            return
        f.stat[2] += 1                      # not the answer: ignored, never cached


cdef int fw_expire(Engine e, uint64_t now) except -2:
    """Flights past their deadline: next upstream, or SERVFAIL.  Returns the ms until
    the next deadline (-1: none)."""
    cdef FwState* f = <FwState*>e.fw
    cdef int slot, ci
    cdef FwFlight* fl
    cdef FwUp* u
    if f == NULL:
        return -1
    while f.nheap and f.flights[f.heap[0]].deadline <= now:
        slot = f.heap[0]
        fl = &f.flights[slot]
        fw_heap_remove(f, slot)
        if fl.exhausted:
            fw_give_up(e, slot)
            continue
        f.stat[3] += 1
        u = &fl.fb.groups[fl.group].ups[fl.cur]
        if u.ctr >= 0:
            e.ctr[u.ctr + F_TIMEOUT] += 1
        ci = fl.conn
        if ci >= 0 and f.conns[ci].last_answer < fl.sent:
            f.conns[ci].retire = True       # no answer since: no new queries there
        fw_fail(e, fl, FE_TIMEOUT, 0, now)
        if not fw_attempt(e, slot, now):
            fw_give_up(e, slot)
    if f.ntcp and now >= f.next_conn_sweep:
        f.next_conn_sweep = now + FW_TCP_SWEEP_NS
        fw_conn_sweep(f, now)
    if not f.nheap:
        return 1000 if f.ntcp else -1
    return <int>((f.flights[f.heap[0]].deadline - now) // 1000000) + 1


cdef void fw_zones(FwZones* z, object zones) except *:
    z.n = 0
    for name in zones:
        memcpy(z.name[z.n], <const uint8_t*>name, len(name))
        z.len[z.n] = len(name)
        z.n += 1


cdef FwBlock* fw_block(dict spec) except NULL:
    """A FwBlock from ``Engine.set_forward``'s ``spec`` (checked by fw_check)."""
    cdef FwBlock* fb = <FwBlock*>calloc(1, sizeof(FwBlock))
    cdef FwGroup* g
    cdef FwUp* u
    cdef int gi, ui, k
    if fb == NULL:
        raise MemoryError()
    fb.refs = 1
    fb.block = spec["block"]
    fb.stage = spec["stage"]
    fb.src = spec.get("src", 0)
    fb.cache_ns = spec.get("cache_ns", 0)
    fb.shuffle = bool(spec.get("shuffle"))
    fb.minimal = bool(spec.get("minimal"))
    fb.log = bool(spec.get("log"))
    fb.bufsize = spec.get("bufsize", 0)
    nsid = spec.get("nsid") or b""
    fb.nsid_len = len(nsid)
    if nsid:
        memcpy(fb.nsid, <const uint8_t*>nsid, len(nsid))
    memset(fb.health, 1, FW_MAX_FLAGS)
    fb.ngroups = len(spec["groups"])
    for gi, gs in enumerate(spec["groups"]):
        g = &fb.groups[gi]
        zone = gs["zone"]
        memcpy(g.zone, <const uint8_t*>zone, len(zone))
        g.zlen = len(zone)
        fw_zones(&g.excepts, gs.get("except", ()))
        g.everything = zone == b"\x00" and not gs.get("except")
        g.python = bool(gs.get("python"))
        g.tcp = bool(gs.get("force_tcp"))
        g.prefer_udp = bool(gs.get("prefer_udp"))
        g.caps = bool(gs.get("caps"))
        g.srclen = 0
        src = gs.get("source")
        if src:
            if not _sockaddr((src, 0), &g.src):
                free(fb)
                raise ValueError(f"source_address {src!r} is not an IP address")
            g.srclen = sizeof(sockaddr_in) if g.src.ss_family == AF_INET else sizeof(sockaddr_in6)
        g.expire_ns = <uint64_t>(gs.get("expire", 10.0) * 1e9)
        g.max_age_ns = <uint64_t>(gs.get("max_age", 0.0) * 1e9)
        g.max_idle = gs.get("max_idle_conns", 0)
        g.policy = ("random", "round_robin", "sequential").index(gs.get("policy", "random"))
        g.max_fails = gs.get("max_fails", 2)
        g.down_ns = <uint64_t>(gs.get("down", 1.0) * 1e9)
        g.timeout_ns = <uint64_t>(gs.get("timeout", 2.0) * 1e9)
        g.tcp_timeout_ns = <uint64_t>(gs.get("tcp_timeout", 2.5) * 1e9)
        g.failover = 0
        for rc in gs.get("failover", ()):
            g.failover |= 1u << rc
        g.max_concurrent = gs.get("max_concurrent", 0)
        g.waiting = gs.get("waiting", -1)
        g.nups = len(gs["ups"])
        for ui, up in enumerate(gs["ups"]):
            u = &g.ups[ui]
            if not _sockaddr((up[0], up[1]), &u.addr):
                free(fb)
                raise ValueError(f"upstream {up[0]!r} is not an IP address")
            u.alen = sizeof(sockaddr_in) if u.addr.ss_family == AF_INET else sizeof(sockaddr_in6)
            u.flag = up[2]
            u.ctr = up[3]
            for k in range(FW_TCP_PER_UP):
                u.conn[k] = -1
    cs = spec.get("cache")
    if cs is not None:
        fb.cache.on = True
        fb.cache.everywhere = b"\x00" in cs["zones"]
        fw_zones(&fb.cache.zones, cs["zones"])
        fw_zones(&fb.cache.no_success, cs.get("no_success", ()))
        fw_zones(&fb.cache.no_denial, cs.get("no_denial", ()))
        fb.cache.success_off = cs["success_capacity"] == 0
        fb.cache.denial_off = cs["denial_capacity"] == 0
        fb.cache.success_ttl = cs["success_ttl"]
        fb.cache.success_minttl = cs["success_minttl"]
        fb.cache.denial_ttl = cs["denial_ttl"]
        fb.cache.denial_minttl = cs["denial_minttl"]
        fb.cache.servfail_ttl = <uint32_t>cs["servfail_ttl"]
        fb.cache.stale = bool(cs.get("stale"))
    return fb


def _fw_check(dict spec) -> None:
    """Raise ValueError unless ``Engine.set_forward`` can hold ``spec``."""
    groups = spec["groups"]
    if not 1 <= len(groups) <= FW_MAX_GROUPS:
        raise ValueError(f"{len(groups)} forward directives (1..{FW_MAX_GROUPS} in C)")
    for gs in groups:
        if len(gs["ups"]) > FW_MAX_UPS or not gs["ups"]:
            raise ValueError("1..16 upstreams per forward")
        if len(gs.get("except", ())) > FW_MAX_EXCEPT:
            raise ValueError(f"more than {FW_MAX_EXCEPT} except zones")
        for up in gs["ups"]:
            if not 0 <= up[2] < FW_MAX_FLAGS:
                raise ValueError("health flag out of range")
    cs = spec.get("cache")
    if cs is not None:
        for k in ("zones", "no_success", "no_denial"):
            if len(cs.get(k, ())) > FW_MAX_ZONES:
                raise ValueError(f"more than {FW_MAX_ZONES} cache {k}")
    if len(spec.get("nsid") or b"") > 512:
        raise ValueError("nsid longer than 512 bytes")
    if not 0 <= spec["block"] < MAX_BLOCKS:
        raise ValueError("block out of range")
