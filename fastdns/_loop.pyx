# cython: language_level=3
"""The worker's answer engine: recvmmsg → parse → table / cache → sendmmsg, in C.

``Engine.serve_udp`` drains a UDP socket in batches without the GIL: every
query answered from the compiled table, synthesised pod names or the shared
cache is parsed, answered and sent from C.  Only misses (forwarding and
plugins that live in Python) are handed back as ``(packet, address)``.
``Engine.answer`` runs the same logic for one message (TCP, tests).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memset, memcmp, memmove
from libc.stdlib cimport realloc

from fastdns._wire cimport (
    QueryInfo, Writer, parse_query, emit_body, emit_rcode, w_init, w_header, w_question,
    w_rr_raw, w_rr_name, w_rr_soa, w_opt, w_finish, ld16, st16, ld32, st32, name_eq_ci,
    body_from_wire, BodyHdr, RRMeta, T_NS, T_SOA,
    W_OK, W_SHORT, W_NOTQUERY, W_FORMERR, W_NOTIMP, W_BADVERS,
    SEC_ANSWER, SEC_AUTHORITY, SEC_ADDITIONAL, T_A, T_AAAA, T_SRV, F_QR, F_AA, F_RD, F_CD,
)
from fastdns._answers cimport TableCore, table_find, FIND_ABSENT, FIND_EXACT, FIND_OTHER, AnswerTable
from fastdns._shmcache cimport (CacheView, CacheMeta, cache_get, cache_put, cache_now, SC_HIT,
                                SC_STALE, SC_KIND_SUCCESS, SC_KIND_DENIAL, SC_KIND_SERVFAIL,
                                SharedCache)
from net cimport (mmsghdr, iovec, sockaddr, sockaddr_storage, socklen_t, recvmmsg, sendmmsg,
                  recv, send, sendto, socket, connect, MSG_NOSIGNAL, EAGAIN, accept4, setsockopt, SOCK_NONBLOCK,
                  SOCK_CLOEXEC, IPPROTO_TCP, TCP_NODELAY, close,
                  MSG_DONTWAIT, errno, EINTR, pollfd, poll, POLLIN, timespec, clock_gettime,
                  CLOCK_MONOTONIC)
from consts cimport EDNS_UDP, MIN_UDP, MAX_MSG
from opsstats cimport (st_now_ns, st_block, st_request, st_response, st_duration, lb_shuffle,
                      lb_next, st_dur_bucket,
                      ST_SECT, ST_DROPPED_SECT, ST_BLOCK_SECT, ST_MAX_BLOCKS, ST_FWD,
                      ST_FWD_UPSTREAMS, F_STRIDE, NTYPES, NSRC, NDUR, NSIZE, B_REQ, B_RCODE,
                      B_DUR, B_DUR_SUM, B_REQSZ, B_REQSZ_SUM, B_RESPSZ, B_RESPSZ_SUM, B_DO,
                      F_REQ, F_RCODE, F_HC_FAIL, F_TIMEOUT, F_DUR, F_DUR_SUM, F_WAITING,
                      F_MC_REJECT)

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)
    int AF_INET
    int AF_INET6
    uint16_t ntohs(uint16_t)
    uint16_t htons(uint16_t)

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        unsigned short sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in6:
        unsigned short sin6_family
        uint16_t sin6_port
        in6_addr sin6_addr
        uint32_t sin6_scope_id

cdef extern from "<sys/socket.h>" nogil:
    int MSG_TRUNC

cdef extern from "<errno.h>" nogil:
    int EMFILE
    int ENFILE
    int ENOBUFS
    int ENOMEM

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLL_CTL_ADD
    int EPOLL_CTL_MOD
    int EPOLL_CTL_DEL
    int EPOLL_CLOEXEC
    uint32_t EPOLLIN
    uint32_t EPOLLOUT
    uint32_t EPOLLERR
    uint32_t EPOLLHUP

DEF TCP_EVENTS = 128          # epoll events taken per wake-up
DEF TCP_READS = 4             # recv() calls per connection per wake-up (fairness)
DEF TCP_MAXFRAME = 65537      # 2-byte length + the largest DNS message
DEF LISTENER_TAG = 1 << 40    # epoll data: listener index | LISTENER_TAG; else a slot
DEF PAUSE_NS = 100000000      # a listener out of descriptors rests 100 ms
DEF TPL_MAX_STATES = 2048       # = fastdns.plugins.template.dfa.MAX_STATES
DEF TPL_TEXT = 1024             # a name's presentation text is at most 1013 bytes

include "_loop_forward.pxi"
include "_loop_fwtcp.pxi"


# --------------------------------------------------------------------------
# helpers (C)

cdef inline bint is_subdomain(const uint8_t* name, uint16_t nlen, const uint8_t* zone,
                              uint16_t zlen) noexcept nogil:
    """Is lower-cased wire ``name`` equal to or under ``zone``?  (label aligned)"""
    cdef size_t pos = 0
    if zlen > nlen or memcmp(name + nlen - zlen, zone, zlen) != 0:
        return False                # the common miss: the tail differs (no label walk)
    while True:
        if nlen - pos == zlen:
            return memcmp(name + pos, zone, zlen) == 0
        if name[pos] == 0:
            return False
        pos += 1 + name[pos]
        if pos > nlen or nlen - pos < zlen:
            return False


cdef inline int undash_ip(const uint8_t* label, int len, uint8_t* addr) noexcept nogil:
    """The pod label ``1-2-3-4`` / ``fd00--1`` → 4 or 16 address bytes; 0 if invalid."""
    cdef char text[64]
    cdef int i, dashes = 0
    cdef bint dd = False
    if len <= 0 or len >= 60:
        return 0
    for i in range(len):
        if label[i] == 45:
            dashes += 1
            if i > 0 and label[i - 1] == 45:
                dd = True
    if dashes == 3 and not dd:
        for i in range(len):
            text[i] = 46 if label[i] == 45 else label[i]
        text[len] = 0
        return 4 if inet_pton(AF_INET, text, addr) == 1 else 0
    for i in range(len):
        text[i] = 58 if label[i] == 45 else label[i]
    text[len] = 0
    return 16 if inet_pton(AF_INET6, text, addr) == 1 else 0


cdef inline long finish_len(size_t n) noexcept nogil:
    return <long>n if n > 0 else A_DROP


# --------------------------------------------------------------------------

cdef class Engine:
    """Routing tables + compiled answers + shared cache for one worker.

    ``configure(conf)`` takes the worker configuration the coordinator
    publishes (see :mod:`fastdns.ipc.schema`); ``set_table``/``set_zone``/
    ``set_synced`` follow the answer deltas.
    """

    def __cinit__(self):
        cdef int i
        self.listeners = <LConf*>calloc(MAX_LISTENERS, sizeof(LConf))
        self.blocks = <BConf*>calloc(MAX_BLOCKS, sizeof(BConf))
        self.inbuf = <uint8_t*>malloc(BATCH * INBUF)
        self.outbuf = <uint8_t*>malloc(BATCH * OUTBUF)
        if not (self.listeners and self.blocks and self.inbuf and self.outbuf):
            raise MemoryError()
        self.nlisteners = 0
        self.nblocks = 0
        self.cache = NULL
        self._keep = {}
        memset(self._own_counters, 0, sizeof(self._own_counters))
        self.ctr = self._own_counters
        self.detail = False
        self.logging = False
        self.cur_block = -1
        self.log_sink = None
        self.rng = <uint64_t><size_t>self.inbuf ^ 0x9E3779B97F4A7C15
        self.conns = NULL
        self.free_slots = NULL
        self.max_conns = 0
        self.nconns = 0
        self.nfree = 0
        self.ntl = 0
        self.tl_resume = 0
        self.next_sweep = 0
        self.idle_ns = 0                # set_tcp_limits (fastdns.limits) sets these;
        self.max_buffered = 0           # until then no TCP client is served
        self.accept_batch = 0
        memset(self.tcp_stat, 0, sizeof(self.tcp_stat))
        self.tcpout = <uint8_t*>malloc(TCP_MAXFRAME)
        self.fw = NULL
        self.udp_misses = None
        self.taking = False
        for i in range(MAX_LISTENERS):
            self.udp_fd[i] = -1
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.tcpout == NULL or self.epfd < 0:
            raise MemoryError()
        for i in range(BATCH):
            self.riov[i].iov_base = self.inbuf + i * INBUF
            self.riov[i].iov_len = INBUF
            memset(&self.rmsgs[i], 0, sizeof(mmsghdr))
            self.rmsgs[i].msg_hdr.msg_name = &self.addrs[i]
            self.rmsgs[i].msg_hdr.msg_iov = &self.riov[i]
            self.rmsgs[i].msg_hdr.msg_iovlen = 1
            memset(&self.smsgs[i], 0, sizeof(mmsghdr))
            self.smsgs[i].msg_hdr.msg_iov = &self.siov[i]
            self.smsgs[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        cdef int i
        if self.conns != NULL:
            for i in range(self.max_conns):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                free(self.conns[i].inb)
                free(self.conns[i].outb)
        free(self.conns)
        free(self.free_slots)
        free(self.tcpout)
        fw_free(<FwState*>self.fw)
        self.fw = NULL
        if self.epfd >= 0:
            close(self.epfd)
        self._free_stages()
        free(self.listeners)
        free(self.blocks)
        free(self.inbuf)
        free(self.outbuf)

    # -- configuration (Python) ---------------------------------------------

    cdef void _free_stages(self) noexcept:
        cdef int bi
        if self.blocks == NULL:
            return
        for bi in range(MAX_BLOCKS):
            free(self.blocks[bi].stages)
            self.blocks[bi].stages = NULL
            self.blocks[bi].nstages = 0

    def configure(self, dict conf) -> None:
        """Install listeners and blocks (their stage chains); every table starts
        empty and unsynced (the snapshot that follows fills them)."""
        cdef int li, bi, k, si, tid
        cdef LConf* L
        cdef BConf* B
        cdef Stage* S
        listeners = conf["listeners"]
        blocks = conf["blocks"]
        _check_conf(listeners, blocks)      # all checks first: a bad conf changes nothing
        stage_arrays = []
        try:
            for bc in blocks:
                S = <Stage*>calloc(max(1, len(bc.get("stages", []))), sizeof(Stage))
                if S == NULL:
                    raise MemoryError()
                stage_arrays.append(<size_t>S)
        except MemoryError:
            for k in stage_arrays:
                free(<Stage*><size_t>k)
            raise
        self._free_stages()
        self._forget_forward()
        memset(self.listeners, 0, MAX_LISTENERS * sizeof(LConf))
        memset(self.blocks, 0, MAX_BLOCKS * sizeof(BConf))
        memset(self.tables, 0, sizeof(self.tables))
        memset(self.tsynced, 0, sizeof(self.tsynced))
        memset(self.tstage, 0, sizeof(self.tstage))
        self._keep = {}
        self.ntables = 0
        for li, lc in enumerate(listeners):
            L = &self.listeners[li]
            zones = sorted(lc["zones"], key=lambda zb: -len(zb[0]))
            for k, (z, bi) in enumerate(zones):
                memcpy(L.zones[k].name, <const uint8_t*>z, len(z))
                L.zones[k].len = len(z)
                L.zones[k].block = bi
            L.nzones = len(zones)
        for bi, bc in enumerate(blocks):
            B = &self.blocks[bi]
            B.stages = <Stage*><size_t>stage_arrays[bi]
            B.nstages = len(bc.get("stages", []))
            for si, sc in enumerate(bc.get("stages", [])):
                S = &B.stages[si]
                S.kind = _KINDS[sc["kind"]]
                S.src = sc.get("src", 0)
                if S.kind == K_PYTHON or S.kind == K_CACHE:
                    # the names and types it takes (a cache stage: those of the Python
                    # stage it stands before, fastdns.plugins.runtime._cache_before)
                    if S.kind == K_PYTHON:
                        B.python = True
                    qtypes = sc.get("qtypes") or ()
                    S.nqtypes = len(qtypes)
                    for k in range(S.nqtypes):
                        S.qtypes[k] = qtypes[k]
                    zones = sc.get("zones")
                    S.any_name = zones is None
                    S.nauth = len(zones) if zones else 0
                    for k in range(S.nauth):
                        memcpy(S.auth[k].name, <const uint8_t*>zones[k], len(zones[k]))
                        S.auth[k].len = len(zones[k])
                    data = sc.get("data")
                    if data is not None:        # the template prefilter (template_stage)
                        self._keep[("stage", bi, si)] = data
                        S.data = <const uint8_t*>data
                        S.data_len = len(data)
                if S.kind == K_LOCAL:
                    S.any_name = bool(sc.get("localhost_prefix", True))
                if S.kind == K_ACL:
                    data = sc["data"]
                    self._keep[("stage", bi, si)] = data
                    S.data = <const uint8_t*>data
                    S.data_len = len(data)
                if S.kind != K_TABLE:
                    continue
                tid = sc["tid"]
                self.tstage[tid] = S
                if tid >= self.ntables:
                    self.ntables = tid + 1
                S.tid = tid
                S.qclass = sc.get("qclass", 1)
                S.any_name = bool(sc.get("any_name"))
                S.wildcard = bool(sc.get("wildcard"))
                S.encloser = bool(sc.get("encloser"))
                S.refuse_xfr = bool(sc.get("refuse_xfr"))
                S.soa_nodata = bool(sc.get("soa_nodata"))
                S.pass_qtype = sc.get("pass_qtype", 0)
                S.pods = 1 if sc.get("pods") == "insecure" else 0
                S.pod_ttl = sc.get("ttl", 5)
                zones = sc.get("zones", [])
                S.nauth = len(zones)
                for k, z in enumerate(zones):
                    memcpy(S.auth[k].name, <const uint8_t*>z, len(z))
                    S.auth[k].len = len(z)
                fall = sc.get("fallthrough")
                S.fall_all = fall is not None and len(fall) == 0
                S.nfall = len(fall) if fall else 0
                for k in range(S.nfall):
                    z = fall[k]
                    memcpy(S.fall[k], <const uint8_t*>z, len(z))
                    S.fall_len[k] = len(z)
            B.cache = bool(bc.get("cache"))
            B.stale_window = bc.get("stale_window", 0)
            B.ra = 0x0080 if bc.get("ra") else 0
            B.shuffle = bool(bc.get("loadbalance"))
            B.log = bool(bc.get("log"))
            B.keepttl = bool(bc.get("keepttl"))
            B.cache_ns = bc.get("cache_ns", 0)
            B.minimal = bool(bc.get("minimal"))
            B.bufsize = bc.get("bufsize", 0)
            nsid = bc.get("nsid")
            if nsid is not None:
                self._keep[("nsid", bi)] = nsid
                B.nsid = <const uint8_t*>nsid
                B.nsid_len = len(nsid)
        self.nlisteners = len(listeners)
        self.nblocks = len(blocks)
        self.detail = bool(conf.get("metrics"))
        self.logging = self.log_sink is not None and any(bc.get("log") for bc in blocks)

    def set_table(self, int tid, AnswerTable table) -> None:
        """Point table stage ``tid`` at ``table`` (None detaches)."""
        if not (0 <= tid < self.ntables and self.tstage[tid] != NULL):
            raise IndexError(tid)
        self._keep[tid] = table            # the previous table of this id may go
        self.tables[tid] = NULL if table is None else &table.core

    def set_zone(self, int tid, int zone, bytes nxdomain, bytes nodata) -> None:
        """Zone ``zone`` of table ``tid``: what absent names get (b"": SERVFAIL)."""
        cdef AZone* Z
        if not (0 <= tid < self.ntables and self.tstage[tid] != NULL
                and 0 <= zone < self.tstage[tid].nauth):
            raise IndexError((tid, zone))
        Z = &self.tstage[tid].auth[zone]
        self._keep[(tid, zone)] = (nxdomain, nodata)
        Z.nx = <const uint8_t*>nxdomain if nxdomain else NULL
        Z.nx_len = len(nxdomain)
        Z.nodata = <const uint8_t*>nodata if nodata else NULL
        Z.nodata_len = len(nodata)

    def set_synced(self, int tid, bint synced) -> None:
        """Until synced, names in table ``tid``'s zones are answered SERVFAIL."""
        if not (0 <= tid < self.ntables and self.tstage[tid] != NULL):
            raise IndexError(tid)
        self.tsynced[tid] = synced

    def attach_cache(self, SharedCache cache) -> None:
        self._cache_ref = cache
        self.cache = cache.view()

    def counters(self) -> list:
        return [self.ctr[i] for i in range(NCOUNTERS)]

    def attach_counters(self, uint64_t[::1] row) -> None:
        """Count into ``row`` (NCOUNTERS uint64s, e.g. this worker's row of a
        shared-memory segment the coordinator sums for /metrics)."""
        if row.shape[0] < NCOUNTERS:
            raise ValueError(f"a counter row needs {NCOUNTERS} slots")
        self._ctr_ref = row
        self.ctr = &row[0]

    def attach_counter_rows(self, uint64_t[::1] rows, int nrows) -> None:
        """Every row of the counter segment (``nrows`` of NCOUNTERS, this worker's among
        them): the C forwarder sums the F_WAITING gauges of all workers for
        ``max_concurrent`` (one limit per directive across the workers)."""
        cdef FwState* f = <FwState*>self.fw
        if nrows < 1 or rows.shape[0] < <Py_ssize_t>nrows * NCOUNTERS:
            raise ValueError("counter rows: too short")
        if f != NULL and f.nffree != f.cap:
            raise ValueError("counter rows change only while nothing is in flight")
        self._rows_ref = rows
        self.allctr = &rows[0]
        self.nrows = nrows

    def count_reply(self, int listener, bytes query, bytes response, double seconds,
                    bint tcp=False, bint v6=False, int src=0) -> None:
        """Count a response Python wrote for a miss (its request was counted when
        it arrived): rcode, size and duration in its block's section.  ``src``:
        0 server/python plugin, 3 forward.  No-op unless metrics are on."""
        cdef QueryInfo q
        cdef int block = -1
        cdef uint64_t* sect
        if not self.detail or len(response) < 4:
            return
        if parse_query(query, len(query), &q) == W_OK:
            block = _route(self, listener, &q)
        sect = st_block(self.ctr, block)
        st_response(sect, src if 0 <= src < NSRC else 0, response[3] & 0xF, len(response), tcp)
        st_duration(sect, <uint64_t>(seconds * 1e9) if seconds > 0 else 0)

    def shuffle_answer(self, bytes response) -> bytes:
        """``loadbalance round_robin`` on a response built in Python (a copy)."""
        cdef bytearray out = bytearray(response)
        cdef uint8_t* p = out
        lb_shuffle(p, len(out), &self.rng)
        return bytes(out)

    def seed_shuffle(self, unsigned long long seed) -> None:
        self.rng = seed | 1

    def set_log_sink(self, list sink) -> None:
        """Queries answered in C for blocks with ``log`` are appended to ``sink`` as
        ``(listener, query, response, address or None, seconds, tcp)`` (None: off).
        Takes effect at the next :meth:`configure`."""
        self.log_sink = sink

    # -- the answer logic (C) ------------------------------------------------

    cdef long answer(self, int li, const uint8_t* pkt, size_t n, QueryInfo* q,
                     uint8_t* out, size_t cap, bint tcp, int start,
                     const sockaddr_storage* peer) noexcept nogil:
        cdef int rc = parse_query(pkt, n, q)
        cdef size_t limit, blen
        cdef const uint8_t* body
        cdef int k
        cdef LConf* L
        cdef BConf* B = NULL
        cdef Stage* S
        cdef long res
        self.cur_block = -1
        self.cur_src = 0
        self.cur_stage = -1
        self.cur_qtype = 0
        self.cur_do = False
        self.cur_shuffle = False
        self.cur_log = False
        if rc == W_SHORT or rc == W_NOTQUERY:
            return A_DROP
        if rc == W_FORMERR:
            return finish_len(emit_rcode(q, 1, 0, out, cap))
        if rc == W_NOTIMP:
            return finish_len(emit_rcode(q, 4, 0, out, cap))
        if rc == W_BADVERS:
            return finish_len(emit_rcode(q, 16, 0, out, cap))
        self.cur_qtype = q.qtype
        self.cur_do = q.do_bit
        if tcp:
            limit = MAX_MSG
        elif q.edns:
            limit = q.udp_size if q.udp_size < EDNS_UDP else EDNS_UDP
        else:
            limit = MIN_UDP
        if li < 0 or li >= self.nlisteners:
            return A_DROP
        L = &self.listeners[li]
        for k in range(L.nzones):
            if is_subdomain(q.key, q.name_len, L.zones[k].name, L.zones[k].len):
                B = &self.blocks[L.zones[k].block]
                self.cur_block = L.zones[k].block
                self.cur_shuffle = B.shuffle
                self.cur_log = B.log
                break
        if B == NULL:
            return finish_len(emit_rcode(q, 5, 0, out, cap))          # REFUSED
        if B.bufsize and q.edns and not tcp and limit > B.bufsize:
            limit = B.bufsize
        for k in range(start, B.nstages):
            S = &B.stages[k]
            if S.kind == K_TABLE:
                res = self._table_stage(S, q, out, cap, limit)
            elif S.kind == K_CACHE:
                res = self._cache_stage(B, q, out, cap, limit) \
                    if (S.any_name or in_zones(S, q)) and qtype_in(S, q.qtype) else A_NEXT
            elif S.kind == K_ANY:
                res = any_hinfo(q, out, cap, limit) if q.qtype == 255 else A_NEXT
            elif S.kind == K_WHOAMI:
                res = whoami(q, peer, tcp, out, cap, limit)
            elif S.kind == K_ACL:
                res = acl_stage(S, q, peer, out, cap, limit)
            elif S.kind == K_LOCAL:
                res = local_stage(S.any_name, q, out, cap, limit)
            else:                                                       # K_PYTHON
                if (S.any_name or in_zones(S, q)) and qtype_in(S, q.qtype):
                    # data: a prefilter (template's regexes as DFAs): Python only if it answers
                    res = A_MISS if S.data == NULL else template_stage(S.data, q, out, cap,
                                                                         limit)
                    if res == A_MISS and S.fwd != NULL and self.taking \
                            and (not tcp or self.cur_token):
                        res = fw_start(self, B, S, q, pkt, n, peer, li, self.cur_token,
                                       out, cap)
                else:
                    res = A_NEXT
            if res != A_NEXT:
                if res == A_MISS:
                    self.cur_stage = k
                else:
                    self.cur_src = S.src
                    if res > 0 and B.minimal:
                        res = minimize(out, res)
                    if res > 0 and B.nsid != NULL and q.nsid:
                        res = add_option(out, res, limit, 3, B.nsid, B.nsid_len)
                return res
        if B.nstages:       # every stage passed it on: CoreDNS's "no next plugin found"
            return finish_len(emit_rcode(q, 2, 0, out, cap))
        return finish_len(emit_rcode(q, 5, 0, out, cap))               # REFUSED: no plugins

    cdef long _table_stage(self, Stage* S, QueryInfo* q, uint8_t* out, size_t cap,
                           size_t limit) noexcept nogil:
        """A compiled table: its answer, its zone's negative, or A_NEXT."""
        cdef int k, zi = -1, found
        cdef const uint8_t* body
        cdef size_t blen
        cdef const TableCore* T = self.tables[S.tid]
        cdef long res
        if q.qclass != S.qclass:
            return A_NEXT
        for k in range(S.nauth):
            if is_subdomain(q.key, q.name_len, S.auth[k].name, S.auth[k].len):
                if zi < 0 or S.auth[k].len > S.auth[zi].len:
                    zi = k
        if zi < 0 and not S.any_name:
            return A_NEXT
        if not self.tsynced[S.tid]:
            if zi < 0:
                return A_NEXT
            return finish_len(emit_rcode(q, 2, 0, out, cap))      # SERVFAIL until synced
        if zi >= 0 and S.refuse_xfr and (q.qtype == 252 or q.qtype == 251):
            # AXFR/IXFR: REFUSED for any name, as CoreDNS's kubernetes plugin
            self.ctr[C_TABLE] += 1
            return finish_len(emit_rcode(q, 5, F_AA, out, cap))
        if T == NULL:
            if S.pass_qtype != 0 and q.qtype == S.pass_qtype:
                return A_NEXT
        else:
            found = table_find(T, q.key, q.name_len, q.qtype, &body, &blen)
            if found == FIND_ABSENT and S.wildcard and zi >= 0:
                found = wildcard_find(T, q, &body, &blen)
            if S.encloser and zi >= 0:
                res = encloser_stage(S, T, zi, q, found, body, blen, out, cap, limit)
                if res != -2:
                    if res > 0:
                        self.ctr[C_TABLE] += 1
                    return res
            if S.pass_qtype != 0 and q.qtype == S.pass_qtype and found != FIND_EXACT:
                return A_NEXT
            if found != FIND_ABSENT:
                self.ctr[C_TABLE] += 1
                return finish_len(emit_body(q, body, blen, 0, limit, out, cap))
        if zi < 0:
            return A_NEXT
        if S.pods:
            res = pod_insecure(S, T, zi, q, out, cap, limit)
            if res != -2:
                if res > 0:
                    self.ctr[C_TABLE] += 1
                return res
        if falls_through(S, q):
            return A_NEXT
        if S.auth[zi].nx == NULL:
            return finish_len(emit_rcode(q, 2, 0, out, cap))
        self.ctr[C_TABLE] += 1
        if q.qtype == 6 and S.soa_nodata and S.auth[zi].nodata != NULL:
            # SOA of a name that does not exist: NODATA, as CoreDNS answers it
            return finish_len(emit_body(q, S.auth[zi].nodata, S.auth[zi].nodata_len,
                                        0, limit, out, cap))
        return finish_len(emit_body(q, S.auth[zi].nx, S.auth[zi].nx_len, 0, limit, out, cap))

    cdef long _cache_stage(self, BConf* B, QueryInfo* q, uint8_t* out, size_t cap,
                           size_t limit) noexcept nogil:
        """The shared cache: a hit, a stale entry (Python serves it and refreshes),
        or A_NEXT."""
        cdef CacheMeta meta
        cdef uint32_t now
        cdef int rc
        if self.cache == NULL:
            return A_NEXT
        now = cache_now()
        rc = cache_get(self.cache, q.key, q.name_len, q.qtype, q.qclass,
                       (1 if q.do_bit else 0) | (B.cache_ns << 1), now, B.stale_window, self.scratch,
                       sizeof(self.scratch), &meta)
        if rc == SC_HIT or rc == SC_STALE:
            if not self.resuming:
                self.ctr[C_CACHE_HIT] += 1
            if rc == SC_STALE:
                return A_MISS if B.python else A_NEXT
            return finish_len(emit_body(q, self.scratch, meta.vlen,
                                        0 if B.keepttl else (now - meta.inserted if now > meta.inserted else 0),
                                        limit, out, cap))
        if not self.resuming:
            self.ctr[C_CACHE_MISS] += 1
        return A_NEXT

    # -- entry points (Python) -----------------------------------------------

    def answer_packet(self, int listener, bytes packet, bint tcp=False, bint v6=False,
                      address=None):
        """Answer one message: bytes to send, b"" to drop, None for a miss.
        ``address`` is the client's ``(host, port)`` (None: unknown; *acl* blocks it)."""
        cdef uint8_t out[65535]
        cdef QueryInfo q
        cdef long r
        cdef uint64_t t0 = st_now_ns() if (self.detail or self.logging) else 0
        cdef uint64_t* sect
        cdef sockaddr_storage peer
        cdef bint have_peer = address is not None and _sockaddr(address, &peer)
        r = self.answer(listener, packet, len(packet), &q, out, sizeof(out), tcp, 0,
                        &peer if have_peer else NULL)
        self.ctr[C_REQ_TCP if tcp else C_REQ_UDP] += 1
        if r > 0 and self.cur_shuffle:
            lb_shuffle(out, r, &self.rng)
        if self.detail:
            sect = st_block(self.ctr, self.cur_block)
            st_request(sect, self.cur_qtype, len(packet), v6, tcp, self.cur_do)
            if r > 0:
                st_response(sect, self.cur_src, out[3] & 0xF, r, tcp)
                st_duration(sect, st_now_ns() - t0)
        if r > 0 and self.logging and self.cur_log:
            self.log_sink.append((listener, packet, out[:r], None, (st_now_ns() - t0) / 1e9, tcp))
        if r == A_MISS:
            self.ctr[C_TO_PYTHON] += 1
            return None
        if r <= 0:
            self.ctr[C_DROPPED] += 1
            return b""
        self.ctr[C_RCODE + (out[3] & 0xF)] += 1
        return out[:r]

    def resume(self, int listener, bytes packet, int start, bint tcp=False, address=None):
        """Run the chain of the query's block from stage ``start`` on (a Python
        handler passed the query on: the C stages after it come next).

        Returns ``(response, src)`` when a stage answered (``src``: its metrics
        source; ``b""``: drop), or ``(None, k)`` when stage ``k`` hands it to
        Python.  Nothing is counted: the caller's reply counts what it sends."""
        cdef uint8_t out[65535]
        cdef QueryInfo q
        cdef long r
        cdef sockaddr_storage peer
        cdef bint have_peer = address is not None and _sockaddr(address, &peer)
        self.resuming = True
        try:
            r = self.answer(listener, packet, len(packet), &q, out, sizeof(out), tcp, start,
                            &peer if have_peer else NULL)
        finally:
            self.resuming = False
        if r == A_MISS:
            return None, self.cur_stage
        if r <= 0:
            return b"", 0
        if self.cur_shuffle:
            lb_shuffle(out, r, &self.rng)
        return out[:r], self.cur_src

    def serve_udp(self, int fd, int listener, list misses, int max_batches=16) -> int:
        """Drain ``fd`` (non-blocking UDP) in batches; append misses to ``misses``.

        Returns the number of datagrams read.  Misses are ``(listener, packet,
        address, stage)`` with the address as ``socket`` gives it (host, port[, flow,
        scope]) and the stage of the block's chain that handed it over.
        """
        cdef int got, i, nsend, sent, nmiss, total = 0, b, nlog
        cdef uint64_t t0 = 0, dur = 0
        cdef uint64_t* sect
        cdef long r
        cdef uint8_t* outp
        self.taking = self.fw != NULL
        for b in range(max_batches):
            nmiss = 0
            nlog = 0
            with nogil:
                for i in range(BATCH):
                    self.rmsgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                    self.rmsgs[i].msg_hdr.msg_flags = 0
                got = recvmmsg(fd, self.rmsgs, BATCH, MSG_DONTWAIT, NULL)
                if got > 0 and (self.detail or self.logging):
                    t0 = st_now_ns()
                nsend = 0
                if got > 0:
                    for i in range(got):
                        self.ctr[C_REQ_UDP] += 1
                        self.ctr[C_REQ_BYTES] += self.rmsgs[i].msg_len
                        outp = self.outbuf + i * OUTBUF
                        if self.rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                            r = A_DROP
                            self.cur_block = -1
                            self.cur_qtype = 0
                            self.cur_do = False
                            self.cur_shuffle = False
                            self.cur_log = False
                        else:
                            r = self.answer(listener, self.inbuf + i * INBUF,
                                            self.rmsgs[i].msg_len, &self.q, outp, OUTBUF, False,
                                            0, &self.addrs[i])
                        if r > 0 and self.cur_shuffle:
                            lb_shuffle(outp, r, &self.rng)
                        if self.detail:
                            sect = st_block(self.ctr, self.cur_block)
                            st_request(sect, self.cur_qtype, self.rmsgs[i].msg_len,
                                       self.addrs[i].ss_family == AF_INET6, False, self.cur_do)
                            self.blk_of[i] = self.cur_block if r > 0 else -2
                            if r > 0:
                                st_response(sect, self.cur_src, outp[3] & 0xF, r, False)
                        if r > 0 and self.logging and self.cur_log:
                            self.log_idx[nlog] = i
                            self.log_len[nlog] = r
                            nlog += 1
                        if r > 0:
                            self.ctr[C_RCODE + (outp[3] & 0xF)] += 1
                            self.ctr[C_RESP_BYTES] += r
                            self.siov[nsend].iov_base = outp
                            self.siov[nsend].iov_len = r
                            self.smsgs[nsend].msg_hdr.msg_name = &self.addrs[i]
                            self.smsgs[nsend].msg_hdr.msg_namelen = self.rmsgs[i].msg_hdr.msg_namelen
                            nsend += 1
                        elif r == A_MISS:
                            self.miss_idx[nmiss] = i
                            self.miss_stage[nmiss] = self.cur_stage
                            nmiss += 1
                        elif r == A_TAKEN:
                            self.ctr[C_FORWARD] += 1
                        else:
                            self.ctr[C_DROPPED] += 1
                    sent = 0
                    while sent < nsend:
                        r = sendmmsg(fd, &self.smsgs[sent], nsend - sent, MSG_DONTWAIT)
                        if r <= 0:
                            if r < 0 and errno == EINTR:
                                continue
                            self.ctr[C_SEND_ERR] += nsend - sent
                            break
                        sent += r
                    if self.detail or nlog:
                        dur = st_now_ns() - t0
                    if self.detail:
                        for i in range(got):
                            if self.blk_of[i] != -2:
                                st_duration(st_block(self.ctr, self.blk_of[i]), dur)
            if got <= 0:
                break
            total += got
            for i in range(nmiss):
                self.ctr[C_TO_PYTHON] += 1
                misses.append((listener, PyBytes_FromStringAndSize(
                    <char*>(self.inbuf + self.miss_idx[i] * INBUF),
                    self.rmsgs[self.miss_idx[i]].msg_len),
                    _address(&self.addrs[self.miss_idx[i]]), self.miss_stage[i]))
            for i in range(nlog):
                self.log_sink.append((listener, PyBytes_FromStringAndSize(
                    <char*>(self.inbuf + self.log_idx[i] * INBUF), self.rmsgs[self.log_idx[i]].msg_len),
                    PyBytes_FromStringAndSize(<char*>(self.outbuf + self.log_idx[i] * OUTBUF),
                                              self.log_len[i]),
                    _address(&self.addrs[self.log_idx[i]]), dur / 1e9, False))
            if got < BATCH:
                break
        self.taking = False
        return total


    # -- the forwarding miss path (C, _loop_forward.pxi) -----------------------

    def set_forward_limits(self, int max_pending, int max_sockets, int max_tcp) -> None:
        """Size the C forwarder (``fastdns.limits``: UPSTREAM_MAX_PENDING client queries
        waiting, UPSTREAM_PORTS upstream sockets open, UPSTREAM_TCP_CONNS of them TCP
        connections).  Only while nothing is in flight."""
        cdef FwState* f = <FwState*>self.fw
        cdef FwState* nf
        cdef int bi
        if max_pending < 1 or max_sockets < 1 or not 1 <= max_tcp <= 0xFFFFFF:
            raise ValueError("bad forward limits")
        if f != NULL:
            if f.cap == max_pending and f.max_tcp == max_tcp:
                f.max_sockets = max_sockets
                return
            if f.nffree != f.cap:
                raise ValueError("forward limits change only while nothing is in flight")
        nf = fw_new(max_pending, max_sockets, max_tcp)
        if nf == NULL:
            raise MemoryError()
        if f != NULL:
            for bi in range(MAX_BLOCKS):
                nf.installed[bi] = f.installed[bi]
                f.installed[bi] = NULL
            fw_free(f)
        self.fw = nf

    def set_forward(self, dict spec) -> None:
        """Forward the UDP misses of block ``spec["block"]`` at its stage
        ``spec["stage"]`` (a Python stage) in C; see fastdns.worker.plugins for
        ``spec``.  Until the next :meth:`configure`."""
        cdef FwState* f = <FwState*>self.fw
        cdef FwBlock* fb
        cdef int bi, si
        if f == NULL:
            raise ValueError("set_forward_limits first")
        _fw_check(spec)
        bi = spec["block"]
        si = spec["stage"]
        if not (bi < self.nblocks and 0 <= si < self.blocks[bi].nstages) \
                or self.blocks[bi].stages[si].kind != K_PYTHON:
            raise ValueError(f"block {bi} has no Python stage {si}")
        fb = fw_block(spec)
        if f.installed[bi] != NULL:
            fw_release(f.installed[bi])
        f.installed[bi] = fb
        self.blocks[bi].stages[si].fwd = fb

    def set_forward_health(self, int block, list flags) -> None:
        """The coordinator's health flags of block ``block``'s upstreams (by flag index)."""
        cdef FwState* f = <FwState*>self.fw
        cdef FwBlock* fb
        cdef int i
        if f == NULL or not 0 <= block < MAX_BLOCKS or f.installed[block] == NULL:
            return
        fb = f.installed[block]
        for i in range(min(len(flags), FW_MAX_FLAGS)):
            fb.health[i] = 1 if flags[i] else 0

    def forward_stats(self) -> dict:
        """The C forwarder's counts since start, and what it holds now."""
        cdef FwState* f = <FwState*>self.fw
        if f == NULL:
            return {}
        return {"sent": f.stat[0], "answered": f.stat[1], "ignored": f.stat[2],
                "timeouts": f.stat[3], "servfail": f.stat[4], "coalesced": f.stat[5],
                "refused": f.stat[6], "to_python": f.stat[7], "errors_dropped": f.stat[8],
                "tcp_sent": f.stat[9], "tcp_opened": f.stat[10], "tcp_closed": f.stat[11],
                "flights": f.cap - f.nffree, "waiting": f.cap - f.nwfree,
                "sockets": f.nsockets, "tcp_conns": f.ntcp, "max_pending": f.cap,
                "max_sockets": f.max_sockets, "max_tcp": f.max_tcp}

    def take_forward_errors(self) -> list:
        """Failures answered to clients since the last call, for the errors plugin:
        ``(block, group, upstream, kind, errno, local address or None, query, rcode,
        tcp)``; kind: timeout, read, dial, write, ports, eof, frame (SERVFAIL),
        concurrent, pending (REFUSED)."""
        cdef FwState* f = <FwState*>self.fw
        cdef FwError* er
        cdef int i
        if f == NULL or f.nerr == 0:
            return []
        out = []
        for i in range(f.nerr):
            er = &f.errs[i]
            out.append((er.block, er.group, er.up,
                        ("none", "timeout", "read", "dial", "write", "ports", "concurrent",
                         "pending", "eof", "frame")[er.kind],
                        er.errnum, _address(&er.local) if er.local.ss_family else None,
                        PyBytes_FromStringAndSize(<char*>er.pkt, er.plen), er.rcode,
                        bool(er.tcp)))
        f.nerr = 0
        return out

    cdef void _forget_forward(self) noexcept:
        """A new configuration: the installed forward blocks go (flights in flight keep
        theirs until they end)."""
        cdef FwState* f = <FwState*>self.fw
        cdef int bi
        if f == NULL:
            return
        for bi in range(MAX_BLOCKS):
            if f.installed[bi] != NULL:
                fw_release(f.installed[bi])
                f.installed[bi] = NULL

    # -- TCP clients (C) -------------------------------------------------------

    def set_tcp_limits(self, int max_connections, double idle_timeout, int max_buffered,
                       int accept_batch, int max_per_source, double evict_idle) -> None:
        """The TCP limits (``fastdns.limits``); the slot table is sized from them.

        Only while no connection is open (at start-up)."""
        cdef int i
        if self.nconns:
            raise ValueError("TCP limits change only while no connection is open")
        if max_connections < 1 or idle_timeout <= 0 or max_buffered < TCP_MAXFRAME \
                or accept_batch < 1 or max_per_source < 1 or evict_idle < 0:
            raise ValueError("bad TCP limits")
        free(self.conns)
        free(self.free_slots)
        self.conns = <TConn*>calloc(max_connections, sizeof(TConn))
        self.free_slots = <int*>malloc(max_connections * sizeof(int))
        if self.conns == NULL or self.free_slots == NULL:
            raise MemoryError()
        self.max_conns = max_connections
        for i in range(max_connections):
            self.conns[i].fd = -1
            self.free_slots[i] = max_connections - 1 - i
        self.nfree = max_connections
        self.idle_ns = <uint64_t>(idle_timeout * 1e9)
        self.max_buffered = max_buffered
        self.accept_batch = accept_batch
        self.max_per_source = max_per_source
        self.evict_idle_ns = <uint64_t>(evict_idle * 1e9)

    def set_tcp_listeners(self, list listeners) -> None:
        """``[(fd, listener), ...]``: the TCP listening sockets (non-blocking)."""
        cdef int i
        cdef epoll_event ev
        if len(listeners) > MAX_LISTENERS:
            raise ValueError("too many TCP listeners")
        if self.conns == NULL:
            raise ValueError("set_tcp_limits first")
        for i in range(self.ntl):
            if self.tl_on[i]:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, self.tl_fd[i], NULL)
        self.ntl = 0
        for i, (fd, li) in enumerate(listeners):
            self.tl_fd[i] = fd
            self.tl_li[i] = li
            ev.events = EPOLLIN
            ev.data.u64 = LISTENER_TAG | <uint64_t>i
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
                raise OSError(errno, "epoll_ctl")
            self.tl_on[i] = True
            self.ntl = i + 1

    def tcp_close_all(self) -> None:
        """Close every client connection (listeners stay)."""
        cdef int i
        if self.conns == NULL:
            return
        for i in range(self.max_conns):
            if self.conns[i].fd >= 0:
                self._tcp_close(i, 3)

    def tcp_send(self, unsigned long long token, bytes answer) -> bool:
        """A miss answered by Python: queue it on its connection (False: gone)."""
        cdef int slot = <int>(token & 0xFFFFFFFF)
        cdef uint32_t serial = <uint32_t>(token >> 32)
        cdef TConn* c
        if self.conns == NULL or not 0 <= slot < self.max_conns:
            return False
        c = &self.conns[slot]
        if c.fd < 0 or c.serial != serial or not answer:
            return False
        if len(answer) > 65535:
            return False
        st16(self.tcpout, len(answer))
        memcpy(self.tcpout + 2, <const uint8_t*>answer, len(answer))
        if self._tcp_queue(slot, self.tcpout, len(answer) + 2):
            self._tcp_flush(slot)
        return True

    def tcp_info(self) -> dict:
        """Open connections and counts since start."""
        return {"open": self.nconns, "max": self.max_conns, "accepted": self.tcp_stat[0],
                "refused": self.tcp_stat[1], "expired": self.tcp_stat[2],
                "closed": self.tcp_stat[3], "refused_source": self.tcp_stat[4],
                "evicted": self.tcp_stat[5]}

    cdef int _tcp_room(self, sockaddr_storage* addr, uint64_t now) noexcept:
        """0 if a connection from ``addr`` may be taken (evicting the oldest idle
        one at the worker's limit), 1 over the worker's limit, 4 over the source's."""
        cdef int i, same = 0, oldest = -1
        cdef TConn* c
        cdef const uint8_t* a = _addr_bytes(addr)
        cdef int alen = 4 if addr.ss_family == AF_INET else 16
        for i in range(self.max_conns):
            c = &self.conns[i]
            if c.fd < 0:
                continue
            if c.addr.ss_family == addr.ss_family and memcmp(_addr_bytes(&c.addr), a, alen) == 0:
                same += 1
                if same >= self.max_per_source:
                    return 4
            if self.nfree == 0 and c.inlen == 0 and c.outlen == 0 \
                    and now - c.active >= self.evict_idle_ns \
                    and (oldest < 0 or c.active < self.conns[oldest].active):
                oldest = i
        if self.nfree:
            return 0
        if oldest < 0:
            return 1
        self._tcp_close(oldest, 5)
        return 0

    cdef void _tcp_close(self, int slot, int why) noexcept:
        cdef TConn* c = &self.conns[slot]
        if c.fd < 0:
            return
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, c.fd, NULL)
        close(c.fd)
        c.fd = -1
        free(c.inb)
        free(c.outb)
        c.inb = NULL
        c.outb = NULL
        c.inlen = c.incap = c.outlen = c.outoff = c.outcap = 0
        c.writing = False
        self.free_slots[self.nfree] = slot
        self.nfree += 1
        self.nconns -= 1
        self.tcp_stat[why] += 1

    cdef void _tcp_accept(self, int t, uint64_t now) noexcept:
        cdef int i, fd, slot, why, one = 1
        cdef TConn* c
        cdef sockaddr_storage addr
        cdef socklen_t alen
        cdef epoll_event ev
        for i in range(self.accept_batch):
            alen = sizeof(sockaddr_storage)
            fd = accept4(self.tl_fd[t], <sockaddr*>&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EMFILE or errno == ENFILE or errno == ENOBUFS or errno == ENOMEM:
                    # out of descriptors: rest the listener instead of spinning on it
                    epoll_ctl(self.epfd, EPOLL_CTL_DEL, self.tl_fd[t], NULL)
                    self.tl_on[t] = False
                    self.tl_resume = now + PAUSE_NS
                return
            why = self._tcp_room(&addr, now)
            if why:
                close(fd)                       # over a limit: refused, nothing kept
                self.tcp_stat[why] += 1
                continue
            self.nfree -= 1
            slot = self.free_slots[self.nfree]
            c = &self.conns[slot]
            ev.events = EPOLLIN
            ev.data.u64 = <uint64_t>slot
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
                close(fd)
                self.nfree += 1
                continue
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            c.fd = fd
            c.listener = self.tl_li[t]
            c.serial += 1
            c.inb = NULL
            c.outb = NULL
            c.inlen = c.incap = c.outlen = c.outoff = c.outcap = 0
            c.writing = False
            c.deadline = now + self.idle_ns
            c.active = now
            c.alen = alen
            memcpy(&c.addr, &addr, alen)
            self.nconns += 1
            self.tcp_stat[0] += 1

    cdef bint _tcp_queue(self, int slot, const uint8_t* data, size_t n) noexcept:
        """Append ``n`` bytes to the connection's output; False: it was closed (too much)."""
        cdef TConn* c = &self.conns[slot]
        cdef size_t need
        cdef uint32_t cap
        cdef uint8_t* nb
        if c.outoff and c.outoff == c.outlen:
            c.outoff = c.outlen = 0
        need = <size_t>c.outlen - c.outoff + n
        if need > self.max_buffered:
            self._tcp_close(slot, 3)            # a client that does not read its answers
            return False
        if c.outlen + n > c.outcap:
            if c.outoff:
                memmove(c.outb, c.outb + c.outoff, c.outlen - c.outoff)
                c.outlen -= c.outoff
                c.outoff = 0
            if c.outlen + n > c.outcap:
                cap = c.outcap * 2 if c.outcap else 4096
                while cap < c.outlen + n:
                    cap *= 2
                nb = <uint8_t*>realloc(c.outb, cap)
                if nb == NULL:
                    self._tcp_close(slot, 3)
                    return False
                c.outb = nb
                c.outcap = cap
        memcpy(c.outb + c.outlen, data, n)
        c.outlen += n
        return True

    cdef void _tcp_flush(self, int slot) noexcept:
        cdef TConn* c = &self.conns[slot]
        cdef long r
        cdef epoll_event ev
        while c.outoff < c.outlen:
            r = send(c.fd, c.outb + c.outoff, c.outlen - c.outoff, MSG_DONTWAIT | MSG_NOSIGNAL)
            if r < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    break
                self._tcp_close(slot, 3)
                return
            c.outoff += r
        if c.outoff == c.outlen:
            c.outoff = c.outlen = 0
        if (c.outlen > 0) != c.writing:
            c.writing = c.outlen > 0
            ev.events = EPOLLIN | (EPOLLOUT if c.writing else 0)
            ev.data.u64 = <uint64_t>slot
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)

    cdef int _tcp_frame(self, int slot, const uint8_t* pkt, size_t n, list misses,
                        uint64_t t0) except -1:
        """One whole query from connection ``slot``: answer it, or hand it to Python.
        Returns 0, or 1 when the connection was closed."""
        cdef TConn* c = &self.conns[slot]
        cdef QueryInfo q
        cdef long r
        cdef uint64_t* sect
        cdef int li = c.listener
        # the C forwarder may take a miss: it answers on this connection by its token
        self.cur_token = (<uint64_t>c.serial << 32) | <uint64_t>slot
        self.taking = self.fw != NULL
        r = self.answer(li, pkt, n, &q, self.tcpout + 2, TCP_MAXFRAME - 2, True, 0, &c.addr)
        self.taking = False
        self.cur_token = 0
        self.ctr[C_REQ_TCP] += 1
        self.ctr[C_REQ_BYTES] += n
        if r > 0 and self.cur_shuffle:
            lb_shuffle(self.tcpout + 2, r, &self.rng)
        if self.detail:
            sect = st_block(self.ctr, self.cur_block)
            st_request(sect, self.cur_qtype, n, c.addr.ss_family == AF_INET6, True, self.cur_do)
            if r > 0:
                st_response(sect, self.cur_src, self.tcpout[5] & 0xF, r, True)
                st_duration(sect, st_now_ns() - t0)
        if r == A_TAKEN:
            self.ctr[C_FORWARD] += 1        # answered when upstream answers (fw_reply)
            return 0
        if r == A_MISS:
            self.ctr[C_TO_PYTHON] += 1
            misses.append((li, PyBytes_FromStringAndSize(<const char*>pkt, n),
                           _address(&c.addr),
                           (<unsigned long long>c.serial << 32) | <unsigned long long>slot,
                           self.cur_stage))
            return 0
        if r <= 0:
            self.ctr[C_DROPPED] += 1
            self._tcp_close(slot, 3)        # not a query we can answer: hang up (RFC 7766 6.2.3)
            return 1
        self.ctr[C_RCODE + (self.tcpout[5] & 0xF)] += 1
        self.ctr[C_RESP_BYTES] += r
        if self.logging and self.cur_log:
            self.log_sink.append((li, PyBytes_FromStringAndSize(<const char*>pkt, n),
                                  PyBytes_FromStringAndSize(<char*>self.tcpout + 2, r),
                                  _address(&c.addr), (st_now_ns() - t0) / 1e9, True))
        st16(self.tcpout, r)
        if not self._tcp_queue(slot, self.tcpout, r + 2):
            return 1
        return 0

    cdef void _tcp_readable(self, int slot, list misses, uint64_t now) except *:
        cdef TConn* c = &self.conns[slot]
        cdef long r
        cdef uint32_t need, flen, cap
        cdef uint8_t* nb
        cdef int reads = 0
        cdef size_t pos
        while True:
            # every whole frame in the buffer first
            pos = 0
            while c.inlen - pos >= 2:
                flen = (<uint32_t>c.inb[pos] << 8) | c.inb[pos + 1]
                if c.inlen - pos < 2 + flen:
                    break
                if self._tcp_frame(slot, c.inb + pos + 2, flen, misses, now):
                    return                      # closed
                pos += 2 + flen
                c.deadline = now + self.idle_ns     # a whole query: the connection lives on
                c.active = now
            if pos:
                memmove(c.inb, c.inb + pos, c.inlen - pos)
                c.inlen -= pos
            if reads == TCP_READS:
                break
            need = 2 if c.inlen < 2 else 2 + ((<uint32_t>c.inb[0] << 8) | c.inb[1])
            if c.incap < need or c.incap == c.inlen:
                cap = c.incap * 2 if c.incap else 1024
                if cap < need:
                    cap = need
                if cap > TCP_MAXFRAME:
                    cap = TCP_MAXFRAME
                nb = <uint8_t*>realloc(c.inb, cap)
                if nb == NULL:
                    self._tcp_close(slot, 3)
                    return
                c.inb = nb
                c.incap = cap
            r = recv(c.fd, c.inb + c.inlen, c.incap - c.inlen, MSG_DONTWAIT)
            reads += 1
            if r < 0 and errno == EINTR:
                continue
            if r < 0 and errno == EAGAIN:
                break
            if r <= 0:
                self._tcp_close(slot, 3)        # EOF or error
                return
            c.inlen += r
        if c.inlen == 0 and c.incap > 4096:     # an idle connection keeps little memory
            free(c.inb)
            c.inb = NULL
            c.incap = 0
        self._tcp_flush(slot)

    cdef void _tcp_sweep(self, uint64_t now) noexcept:
        """Close connections past their deadline; wake rested listeners."""
        cdef int i
        cdef epoll_event ev
        for i in range(self.max_conns):
            if self.conns[i].fd >= 0 and now > self.conns[i].deadline:
                self._tcp_close(i, 2)
        if self.tl_resume and now >= self.tl_resume:
            self.tl_resume = 0
            for i in range(self.ntl):
                if not self.tl_on[i]:
                    ev.events = EPOLLIN
                    ev.data.u64 = LISTENER_TAG | <uint64_t>i
                    if epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.tl_fd[i], &ev) == 0:
                        self.tl_on[i] = True

    cdef int _serve_tcp(self, list misses) except -1:
        """Handle every ready TCP listener and connection (no waiting)."""
        cdef epoll_event evs[TCP_EVENTS]
        cdef int n, i, slot
        cdef uint64_t tag
        cdef uint64_t now = st_now_ns()
        n = epoll_wait(self.epfd, evs, TCP_EVENTS, 0)
        for i in range(n):
            tag = evs[i].data.u64
            if tag & FWD_TAG:
                fw_readable(self, tag, evs[i].events)
                continue
            if tag & LISTENER_TAG:
                self._tcp_accept(<int>(tag & 0xFFFF), now)
                continue
            slot = <int>tag
            if self.conns[slot].fd < 0:
                continue
            if evs[i].events & EPOLLOUT:
                self._tcp_flush(slot)
                if self.conns[slot].fd < 0:
                    continue
            if evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP):
                self._tcp_readable(slot, misses, now)
        if self.fw != NULL and (<FwState*>self.fw).nq:
            fw_flush_replies(self)          # the answers upstream answers gave, together
        return n

    def serve_tcp(self, list misses) -> int:
        """Accept, read, answer and write every ready TCP connection now; misses
        are appended as ``(listener, packet, address, token)`` (answer them with
        :meth:`tcp_send`).  Also closes connections past their deadline."""
        cdef uint64_t now = st_now_ns()
        if self.conns == NULL:
            return self._serve_tcp(misses) if self.fw != NULL else 0
        if now >= self.next_sweep:
            self.next_sweep = now + 200000000
            self._tcp_sweep(now)
        return self._serve_tcp(misses)

    def run(self, list udp, list wake, int timeout_ms, list misses,
            list tcp_misses=None) -> list:
        """Serve the UDP sockets and the TCP clients until something needs Python.

        ``udp`` is ``[(fd, listener), ...]``, ``wake`` a list of fds Python
        handles (ZeroMQ, upstream sockets), each an fd (readable) or ``(fd,
        poll events)`` (a connection Python drives: writable too).  Blocks in poll() without the
        GIL, drains every readable UDP socket in C, serves every ready TCP
        listener and connection in C (:meth:`serve_tcp`, misses into
        ``tcp_misses``), and returns the wake fds that became readable — or
        ``[]`` when misses were queued, the timeout passed, or a signal arrived.
        """
        cdef int nudp = len(udp), nwake = len(wake), n, i, rc, base, due
        cdef bint busy
        cdef pollfd *pfds
        cdef int *lis
        cdef long remaining = timeout_ms
        cdef timespec t0, t1
        cdef bint fwd = self.fw != NULL
        cdef bint tcp = (self.conns != NULL and tcp_misses is not None) or fwd
        if tcp_misses is None:
            tcp_misses = []
        base = nudp + (1 if tcp else 0)
        n = base + nwake
        # sized from what Python hands us (bounded by fastdns.limits), no fixed cap
        pfds = <pollfd*>malloc((n + 1) * sizeof(pollfd))
        lis = <int*>malloc((nudp + 1) * sizeof(int))
        if pfds == NULL or lis == NULL:
            free(pfds)
            free(lis)
            raise MemoryError("poll set")
        try:
            for i in range(MAX_LISTENERS):
                self.udp_fd[i] = -1
            for i in range(nudp):
                pfds[i].fd = udp[i][0]
                lis[i] = udp[i][1]
                pfds[i].events = POLLIN
                if 0 <= lis[i] < MAX_LISTENERS:
                    self.udp_fd[lis[i]] = pfds[i].fd
            self.udp_misses = misses
            self.tcp_misses = tcp_misses
            if tcp:
                pfds[nudp].fd = self.epfd
                pfds[nudp].events = POLLIN
            for i in range(nwake):
                w = wake[i]
                if isinstance(w, tuple):            # (fd, poll events): writable too
                    pfds[base + i].fd = w[0]
                    pfds[base + i].events = w[1]
                else:
                    pfds[base + i].fd = w
                    pfds[base + i].events = POLLIN
            clock_gettime(CLOCK_MONOTONIC, &t0)
            while True:
                due = -1
                if fwd:
                    due = fw_expire(self, st_now_ns())
                    fw_flush_dirty(self)            # queries queued on upstream TCP connections
                with nogil:
                    rc = poll(pfds, n, remaining if due < 0 or due > remaining else due)
                if tcp:
                    self.serve_tcp(tcp_misses)      # sweeps deadlines even on a timeout
                if fwd:
                    fw_expire(self, st_now_ns())
                if rc < 0 or (rc == 0 and (misses or tcp_misses or due < 0 or due >= remaining)):
                    return []
                # with upstream queries in flight, fewer client batches per wake-up: their
                # answers (epoll, above) wait behind at most 4 x 64 client queries
                busy = fwd and (<FwState*>self.fw).nffree < (<FwState*>self.fw).cap
                for i in range(nudp):
                    if pfds[i].revents:
                        self.serve_udp(pfds[i].fd, lis[i], misses, 4 if busy else 16)
                woke = [pfds[base + i].fd for i in range(nwake) if pfds[base + i].revents]
                if woke or misses or (tcp and tcp_misses):
                    return woke
                clock_gettime(CLOCK_MONOTONIC, &t1)
                remaining = timeout_ms - ((t1.tv_sec - t0.tv_sec) * 1000
                                          + (t1.tv_nsec - t0.tv_nsec) // 1000000)
                if remaining <= 0:
                    return []
        finally:
            if fwd:
                fw_flush_dirty(self)
            self.udp_misses = None
            self.tcp_misses = None
            free(pfds)
            free(lis)


def _check_conf(list listeners, list blocks) -> None:
    """Raise ValueError unless ``Engine.configure`` can install this configuration."""
    def wire_name(z, what):
        if not isinstance(z, bytes) or not 0 < len(z) <= 255:
            raise ValueError(f"{what} {z!r}: not a wire name")
    if len(listeners) > MAX_LISTENERS or len(blocks) > MAX_BLOCKS:
        raise ValueError("too many listeners or server blocks for one worker")
    for lc in listeners:
        if len(lc["zones"]) > MAX_LZONES:
            raise ValueError("too many zones on one listener")
        for z, bi in lc["zones"]:
            wire_name(z, "listener zone")
            if not 0 <= bi < len(blocks):
                raise ValueError(f"listener zone {z!r} -> block {bi}: no such block")
    tids = set()
    for bc in blocks:
        nsid = bc.get("nsid")
        if nsid is not None and (not isinstance(nsid, bytes) or len(nsid) > 512):
            raise ValueError("nsid: at most 512 bytes")
        if not 0 <= bc.get("cache_ns", 0) < 128:
            raise ValueError(f"cache namespace {bc.get('cache_ns')}: expected 0..127")
        stages = bc.get("stages", [])
        if len(stages) > MAX_STAGES:
            raise ValueError(f"{len(stages)} engine stages in one block (at most {MAX_STAGES})")
        for sc in stages:
            if sc["kind"] not in _KINDS:
                raise ValueError(f"unknown engine stage {sc['kind']!r}")
            if not 0 <= sc.get("src", 0) < NSRC:
                raise ValueError(f"metrics source {sc.get('src')} out of range")
            if sc["kind"] in ("python", "cache"):
                qtypes = sc.get("qtypes") or ()
                if len(qtypes) > 8 or not all(isinstance(t, int) and 0 < t < 65536 for t in qtypes):
                    raise ValueError(f"{sc['kind']} stage qtypes {qtypes!r}: at most 8 types 1..65535")
                zones = sc.get("zones")
                if zones is not None and len(zones) > MAX_AZONES:
                    raise ValueError("too many zones in one stage")
                for z in zones or ():
                    wire_name(z, "zone")
                if sc.get("data") is not None:
                    _check_template(sc["data"], wire_name)
            if sc["kind"] == "acl":
                _check_acl(sc.get("data"), wire_name)
            if sc["kind"] != "table":
                continue
            tid = sc["tid"]
            if not 0 <= tid < MAX_TABLES or tid in tids:
                raise ValueError(f"table id {tid}: out of range or used twice "
                                 f"(at most {MAX_TABLES} tables)")
            tids.add(tid)
            zones = sc.get("zones", [])
            fall = sc.get("fallthrough") or []
            if len(zones) > MAX_AZONES or len(fall) > MAX_FALL:
                raise ValueError("too many zones in one block")
            for z in zones:
                wire_name(z, "zone")
            for z in fall:
                wire_name(z, "fallthrough zone")


def _check_acl(data, wire_name) -> None:
    """An *acl* stage's rules must be whole: the C walk trusts their lengths."""
    if not isinstance(data, bytes):
        raise ValueError("acl stage without its rules")
    o, n = 0, len(data)

    def need(k):
        if o + k > n:
            raise ValueError("acl rules: truncated")
    while o < n:
        need(1)
        nz = data[o]
        o += 1
        for _ in range(nz):
            need(1)
            zl = data[o]
            need(1 + zl)
            wire_name(data[o + 1:o + 1 + zl], "acl zone")
            o += 1 + zl
        need(1)
        np = data[o]
        o += 1
        for _ in range(np):
            need(3)
            if data[o] not in (ACL_ALLOW, ACL_BLOCK, ACL_FILTER, ACL_DROP):
                raise ValueError(f"acl rules: unknown action {data[o]}")
            nt = int.from_bytes(data[o + 1:o + 3], "big")
            o += 3 + (2 * nt if nt != 0xFFFF else 0)
            need(2)
            nn = int.from_bytes(data[o:o + 2], "big")
            o += 2
            for _ in range(nn if nn != 0xFFFF else 0):
                need(2)
                fam, plen = data[o], data[o + 1]
                if fam not in (4, 16) or plen > fam * 8:
                    raise ValueError("acl rules: bad network")
                need(2 + fam)
                o += 2 + fam


def _check_any_question_body(bytes body) -> None:
    """A stored body the engine may emit behind any question (template answers)."""
    from fastdns._wire import parse as parse_query, response_from_body
    q = parse_query(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x00\x00\x01\x00\x01")
    try:
        response_from_body(q, body, 0, 65535)
    except Exception as exc:
        raise ValueError(f"template prefilter: a stored answer does not emit ({exc})") from None


def _check_template(data, wire_name) -> None:
    """A python stage's template prefilter (fastdns.plugins.template.dfa.encode) must be
    whole and every DFA closed (classes and next states in range): the C walk trusts it."""
    from array import array
    import sys
    if not isinstance(data, bytes):
        raise ValueError("template prefilter: not bytes")
    n = len(data)

    def u(o, k):
        if o + k > n:
            raise ValueError("template prefilter: truncated")
        return int.from_bytes(data[o:o + k], "little")

    def names(o, end):
        cnt = u(o, 1)
        o += 1
        for _ in range(cnt):
            zl = u(o, 1)
            if o + 1 + zl > end:
                raise ValueError("template prefilter: truncated zone")
            wire_name(data[o + 1:o + 1 + zl], "template zone")
            o += 1 + zl
        return o
    nt = u(0, 2)
    o = 2
    for _ in range(nt):
        size = u(o, 4)
        o += 4
        end = o + size
        if end > n or size < 5:
            raise ValueError("template prefilter: truncated template")
        o = names(o + 5, end)
        o = names(o, end)
        nr = u(o, 1)
        o += 1
        for _ in range(nr):
            rs = u(o, 4)
            o += 4
            if o + rs > end:
                raise ValueError("template prefilter: truncated regex")
            if rs:
                ns, nc, st = u(o, 2), u(o + 2, 2), u(o + 4, 2)
                if not 0 < ns <= TPL_MAX_STATES or not 0 < nc <= 256 or st >= ns \
                        or rs != 6 + 256 + ns + 2 * ns * nc:
                    raise ValueError("template prefilter: bad DFA header")
                if max(data[o + 6:o + 262]) >= nc:
                    raise ValueError("template prefilter: byte class out of range")
                tr = array("H")
                tr.frombytes(data[o + 262 + ns:o + rs])
                if sys.byteorder == "big":
                    tr.byteswap()
                if max(tr) >= ns:
                    raise ValueError("template prefilter: DFA state out of range")
            o += rs
        bl = u(o, 4)
        o += 4
        if o + bl > end:
            raise ValueError("template prefilter: truncated answer")
        if bl:
            _check_any_question_body(data[o:o + bl])
        o += bl
        if o != end:
            raise ValueError("template prefilter: template size mismatch")
    if o != n:
        raise ValueError("template prefilter: trailing bytes")


_KINDS = {"table": K_TABLE, "cache": K_CACHE, "python": K_PYTHON, "any": K_ANY,
          "whoami": K_WHOAMI, "acl": K_ACL, "local": K_LOCAL}


cdef long any_hinfo(QueryInfo* q, uint8_t* out, size_t cap, size_t limit) noexcept nogil:
    """RFC 8482's answer to ANY, as CoreDNS's *any*: one HINFO, TTL 8482."""
    cdef Writer w
    cdef const uint8_t* rd = b"\x0dANY obsoleted\x0cSee RFC 8482"
    w_init(&w, out, cap, limit)
    w_header(&w, q.id, F_QR | (q.flags & (0x7800 | F_RD | F_CD)), 0)
    w_question(&w, q.raw, q.name_len, q.qtype, q.qclass)
    if q.edns:
        w.reserve = 11
    w_rr_raw(&w, SEC_ANSWER, q.raw, q.name_len, 13, 1, 8482, rd, 27)
    if q.edns:
        w_opt(&w, EDNS_UDP, q.do_bit)
    return finish_len(w_finish(&w))


# --------------------------------------------------------------------------
# template prefilter: the block's templates, their regexes as DFAs
# (fastdns/plugins/template/dfa.py writes the layout; _check_template checks it)

cdef inline uint32_t le16(const uint8_t* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8)


cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef int name_text(const uint8_t* key, uint8_t* out) noexcept nogil:
    """Wire ``key`` (lower-cased) → its presentation text with the trailing dot, as
    fastdns._wire.name_to_text writes it (the text the Python resolver matches):
    ``"().;\\@$`` escaped with a backslash, bytes outside 0x21..0x7E as ``\\DDD``."""
    cdef int pos = 0, o = 0, i, ln
    cdef uint8_t c
    if key[0] == 0:
        out[0] = 46
        return 1
    while key[pos] != 0:
        ln = key[pos]
        for i in range(1, ln + 1):
            c = key[pos + i]
            if c == 34 or c == 40 or c == 41 or c == 46 or c == 59 or c == 92 or c == 64 \
                    or c == 36:
                out[o] = 92
                out[o + 1] = c
                o += 2
            elif 0x20 < c < 0x7F:
                out[o] = c
                o += 1
            else:
                out[o] = 92
                out[o + 1] = 48 + c // 100
                out[o + 2] = 48 + (c // 10) % 10
                out[o + 3] = 48 + c % 10
                o += 4
        out[o] = 46
        o += 1
        pos += 1 + ln
    return o


cdef bint dfa_run(const uint8_t* d, const uint8_t* text, int n) noexcept nogil:
    """Does the regex of DFA ``d`` match somewhere in ``text`` (Go's MatchString)?"""
    cdef uint32_t nc = le16(d + 2), s = le16(d + 4)
    cdef const uint8_t* cmap = d + 6
    cdef const uint8_t* fl = d + 262
    cdef const uint8_t* tr = fl + le16(d)
    cdef int i
    if fl[s] & 1:
        return True
    for i in range(n):
        s = le16(tr + 2 * (s * nc + cmap[text[i]]))
        if fl[s] & 1:
            return True
        if fl[s] & 4:
            return False
    return (fl[s] & 2) != 0


cdef long template_stage(const uint8_t* d, QueryInfo* q, uint8_t* out, size_t cap,
                         size_t limit) noexcept nogil:
    """CoreDNS's template Handler: the answer of the first template whose regex matches
    when it is static (its stored body), A_MISS when a template must answer it in Python
    (records computed per query) or SERVFAIL it (no regex matched and no fallthrough),
    A_NEXT when every template passes it on.  The templates in order: zones, class and
    type (255 = any, on either side), then the regexes on the name's text; none matches
    → the next template if a fallthrough zone holds the name, else SERVFAIL (Python
    writes it).  A regex without a DFA (size 0) is decided by Python."""
    cdef uint8_t text[TPL_TEXT]
    cdef int tlen = -1
    cdef uint32_t nt = le16(d), t, size, qc, qt, nz, nr, r, rs
    cdef size_t o = 2, end
    cdef bint fall, zin, fin
    for t in range(nt):
        size = le32(d + o)
        o += 4
        end = o + size
        qc = le16(d + o)
        qt = le16(d + o + 2)
        fall = d[o + 4] != 0
        o += 5
        zin = False
        nz = d[o]
        o += 1
        for r in range(nz):
            if not zin and is_subdomain(q.key, q.name_len, d + o + 1, d[o]):
                zin = True
            o += 1 + d[o]
        if not zin or (qc != 255 and q.qclass != 255 and q.qclass != qc) \
                or (qt != 255 and q.qtype != 255 and q.qtype != qt):
            o = end
            continue
        fin = False
        nz = d[o]
        o += 1
        for r in range(nz):
            if not fin and is_subdomain(q.key, q.name_len, d + o + 1, d[o]):
                fin = True
            o += 1 + d[o]
        nr = d[o]
        o += 1
        for r in range(nr):
            rs = le32(d + o)
            o += 4
            if rs == 0:
                return A_MISS
            if tlen < 0:
                tlen = name_text(q.key, text)
            if dfa_run(d + o, text, tlen):
                return template_answer(d, o + rs, nr - r - 1, q, out, cap, limit)
            o += rs
        if fall and fin:
            o = end
            continue
        return A_MISS
    return A_NEXT


cdef long template_answer(const uint8_t* d, size_t o, uint32_t rest, QueryInfo* q,
                          uint8_t* out, size_t cap, size_t limit) noexcept nogil:
    """A template matched: skip its ``rest`` regexes after ``o`` to its stored body and
    answer with it, or A_MISS when it has none (Python writes the answer)."""
    cdef uint32_t r, bl
    for r in range(rest):
        o += 4 + le32(d + o)
    bl = le32(d + o)
    if bl == 0:
        return A_MISS
    return finish_len(emit_body(q, d + o + 4, bl, 0, limit, out, cap))


cdef inline bint qtype_in(Stage* S, uint16_t qtype) noexcept nogil:
    """Does a python stage take this query type (every type when it names none)?"""
    cdef int k
    if S.nqtypes == 0:
        return True
    for k in range(S.nqtypes):
        if S.qtypes[k] == qtype:
            return True
    return False


cdef inline bint in_zones(Stage* S, QueryInfo* q) noexcept nogil:
    """Is the query's name in one of the stage's zones?"""
    cdef int k
    for k in range(S.nauth):
        if is_subdomain(q.key, q.name_len, S.auth[k].name, S.auth[k].len):
            return True
    return False


cdef int peer_ip(const sockaddr_storage* peer, uint8_t* ip) noexcept nogil:
    """The client's address bytes (4 or 16; an IPv4-mapped IPv6 address as its 4);
    0 when unknown."""
    cdef const uint8_t* a
    if peer == NULL:
        return 0
    if peer.ss_family == AF_INET:
        memcpy(ip, &(<sockaddr_in*>peer).sin_addr, 4)
        return 4
    if peer.ss_family != AF_INET6:
        return 0
    a = (<sockaddr_in6*>peer).sin6_addr.s6_addr
    if memcmp(a, b"\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0:
        memcpy(ip, a + 12, 4)
        return 4
    memcpy(ip, a, 16)
    return 16


cdef long whoami(QueryInfo* q, const sockaddr_storage* peer, bint tcp, uint8_t* out,
                 size_t cap, size_t limit) noexcept nogil:
    """CoreDNS's *whoami*: NOERROR, AA, and in the additional section the client's
    address (A or AAAA, owner the query name) and ``_udp``/``_tcp.<qname> SRV 0 0
    PORT .``; TTL 0, the query's class."""
    cdef Writer w
    cdef uint8_t ip[16]
    cdef uint8_t owner[256]
    cdef uint8_t srv[6]
    cdef int alen = peer_ip(peer, ip)
    cdef uint16_t port
    if alen == 0 or q.name_len + 5 > 255:
        return finish_len(emit_rcode(q, 2, 0, out, cap))
    port = ntohs((<sockaddr_in*>peer).sin_port if peer.ss_family == AF_INET
                 else (<sockaddr_in6*>peer).sin6_port)
    owner[0] = 4
    memcpy(owner + 1, b"_tcp" if tcp else b"_udp", 4)
    memcpy(owner + 5, q.raw, q.name_len)
    st16(srv, 0)
    st16(srv + 2, 0)
    st16(srv + 4, port)
    w_init(&w, out, cap, limit)
    w_header(&w, q.id, F_QR | F_AA | (q.flags & (0x7800 | F_RD | F_CD)), 0)
    w_question(&w, q.raw, q.name_len, q.qtype, q.qclass)
    if q.edns:
        w.reserve = 11
    w_rr_raw(&w, SEC_ADDITIONAL, q.raw, q.name_len, T_A if alen == 4 else T_AAAA, q.qclass,
             0, ip, alen)
    _whoami_srv(&w, owner, q, srv)
    if q.edns:
        w_opt(&w, EDNS_UDP, q.do_bit)
    return finish_len(w_finish(&w))


cdef int _whoami_srv(Writer* w, const uint8_t* owner, QueryInfo* q, uint8_t* srv) noexcept nogil:
    """SRV rdata: priority 0, weight 0, the port, target "." (one zero byte)."""
    cdef uint8_t rd[7]
    memcpy(rd, srv, 6)
    rd[6] = 0
    return w_rr_raw(w, SEC_ADDITIONAL, owner, q.name_len + 5, T_SRV, q.qclass, 0, rd, 7)


# acl actions, as fastdns.plugins.acl encodes them
cdef enum:
    ACL_ALLOW = 1
    ACL_BLOCK = 2
    ACL_FILTER = 3
    ACL_DROP = 4


cdef int acl_policy(const uint8_t* d, size_t n, size_t* off, QueryInfo* q, const uint8_t* ip,
                    int alen) noexcept nogil:
    """One encoded policy at ``off`` (moved past it): its action if it matches, else 0.
    Layout: action u8, ntypes u16 (0xFFFF every type) + types u16..., nnets u16
    (0xFFFF every source) + nets (family 4|16 u8, prefix u8, address bytes)..."""
    cdef int action, nt, nn, i, fam, plen, full, rest, hit_type, hit_net = 0
    cdef size_t o = off[0]
    action = d[o]
    nt = ld16(d + o + 1)
    o += 3
    hit_type = nt == 0xFFFF
    if nt != 0xFFFF:
        for i in range(nt):
            if ld16(d + o + 2 * i) == q.qtype:
                hit_type = 1
        o += 2 * nt
    nn = ld16(d + o)
    o += 2
    if nn == 0xFFFF:
        hit_net = alen != 0
    else:
        for i in range(nn):
            fam = d[o]
            plen = d[o + 1]
            if not hit_net and fam == alen:
                full = plen // 8
                rest = plen % 8
                if memcmp(d + o + 2, ip, full) == 0 and (
                        rest == 0 or ((d[o + 2 + full] ^ ip[full]) & (0xFF << (8 - rest)) & 0xFF) == 0):
                    hit_net = 1
            o += 2 + fam
    off[0] = o
    return action if hit_type and hit_net else 0


cdef long acl_stage(Stage* S, QueryInfo* q, const sockaddr_storage* peer, uint8_t* out,
                    size_t cap, size_t limit) noexcept nogil:
    """CoreDNS's *acl*: rules in order; in the first rule whose zones hold the name
    and that has a matching policy, that policy's action (allow: the next plugin).
    A source that is not known is blocked, as CoreDNS blocks an unparsable one.
    Rule layout: nzones u8 + (len u8, wire name)..., npolicies u8 + policies."""
    cdef const uint8_t* d = S.data
    cdef size_t n = S.data_len, o = 0
    cdef uint8_t ip[16]
    cdef int alen = peer_ip(peer, ip)
    cdef int nz, np, i, zin, action, got
    while o < n:
        nz = d[o]
        o += 1
        zin = 0
        for i in range(nz):
            if not zin and is_subdomain(q.key, q.name_len, d + o + 1, d[o]):
                zin = 1
            o += 1 + d[o]
        np = d[o]
        o += 1
        action = 0
        for i in range(np):
            got = acl_policy(d, n, &o, q, ip, alen)
            if zin and action == 0:
                action = got
        if not zin:
            continue
        if alen == 0:
            action = ACL_BLOCK
        if action == ACL_ALLOW:
            return A_NEXT
        if action == ACL_DROP:
            return A_DROP
        if action == ACL_BLOCK or action == ACL_FILTER:
            return acl_answer(q, 5 if action == ACL_BLOCK else 0,
                              15 if action == ACL_BLOCK else 17, out, cap, limit)
    return A_NEXT


cdef long acl_answer(QueryInfo* q, int rcode, int ede, uint8_t* out, size_t cap,
                     size_t limit) noexcept nogil:
    """REFUSED (blocked) or an empty NOERROR (filtered) with an EDE option (RFC 8914)."""
    cdef Writer w
    w_init(&w, out, cap, limit)
    w_header(&w, q.id, F_QR | (q.flags & (0x7800 | F_RD | F_CD)), rcode)
    w_question(&w, q.raw, q.name_len, q.qtype, q.qclass)
    w.reserve = 17
    if w_opt(&w, EDNS_UDP, True) == W_OK and w.pos + 6 <= w.limit:
        st16(w.buf + w.pos - 2, 6)
        st16(w.buf + w.pos, 15)         # option EDE
        st16(w.buf + w.pos + 2, 2)
        st16(w.buf + w.pos + 4, ede)
        w.pos += 6
    return finish_len(w_finish(&w))


cdef bint _sockaddr(object address, sockaddr_storage* ss) except -1:
    """``(host, port[, ...])`` as a socket address (False if ``host`` is not an IP)."""
    cdef bytes host = str(address[0]).encode()
    memset(ss, 0, sizeof(sockaddr_storage))
    if inet_pton(AF_INET, host, &(<sockaddr_in*>ss).sin_addr) == 1:
        ss.ss_family = AF_INET
        (<sockaddr_in*>ss).sin_port = htons(int(address[1]))
        return True
    if inet_pton(AF_INET6, host, &(<sockaddr_in6*>ss).sin6_addr) == 1:
        ss.ss_family = AF_INET6
        (<sockaddr_in6*>ss).sin6_port = htons(int(address[1]))
        return True
    return False


cdef size_t rr_end(const uint8_t* m, size_t n, size_t off) noexcept nogil:
    """The offset after the RR at ``off`` (0: malformed)."""
    while off < n:
        if m[off] == 0:
            off += 1
            break
        if m[off] & 0xC0 == 0xC0:
            off += 2
            break
        if m[off] & 0xC0:
            return 0
        off += 1 + m[off]
    if off + 10 > n:
        return 0
    off += 10 + ld16(m + off + 8)
    return off if off <= n else 0


cdef long minimize(uint8_t* m, long n) noexcept nogil:
    """*minimal*: a successful, non-delegation answer keeps its answer section and
    OPT only (authority and other additional records dropped, in place)."""
    cdef size_t off = 12, end, keep
    cdef int i, an, ns, ar, kept = 0
    if n < 12 or (m[3] & 0xF) != 0 or ld16(m + 4) != 1:
        return n
    an = ld16(m + 6)
    ns = ld16(m + 8)
    ar = ld16(m + 10)
    if an == 0 and ns == 0 and ar <= 1:
        return n                    # nothing to drop (NODATA keeps its SOA: an = 0 below)
    if an == 0:
        return n                    # NODATA or a delegation: passed on unchanged
    while off < <size_t>n and m[off] != 0:
        if m[off] & 0xC0:
            return n
        off += 1 + m[off]
    off += 5                        # root label, qtype, qclass
    for i in range(an):
        off = rr_end(m, n, off)
        if off == 0:
            return n
    keep = off
    for i in range(ns + ar):
        end = rr_end(m, n, off)
        if end == 0:
            return n
        # OPT: owner is the root (one 0 byte), type 41
        if i >= ns and m[off] == 0 and end - off >= 11 and ld16(m + off + 1) == 41:
            memmove(m + keep, m + off, end - off)
            keep += end - off
            kept += 1
        off = end
    st16(m + 8, 0)
    st16(m + 10, kept)
    return <long>keep


cdef long add_option(uint8_t* m, long n, size_t limit, uint16_t code, const uint8_t* data,
                     size_t dlen) noexcept nogil:
    """Append an EDNS option to the response's OPT record, in place (``n`` unchanged
    when there is no OPT, the message is malformed, or it would pass ``limit``)."""
    cdef size_t off = 12, end, grow = 4 + dlen
    cdef int i, total
    if n < 12 or <size_t>n + grow > limit:
        return n
    total = ld16(m + 6) + ld16(m + 8) + ld16(m + 10)
    for i in range(ld16(m + 4)):                    # the question(s)
        while off < <size_t>n:
            if m[off] == 0:
                off += 1
                break
            if m[off] & 0xC0:
                off += 2
                break
            off += 1 + m[off]
        off += 4
    for i in range(total):
        end = rr_end(m, n, off)
        if end == 0:
            return n
        if i >= total - ld16(m + 10) and m[off] == 0 and end - off >= 11 \
                and ld16(m + off + 1) == 41:
            if ld16(m + off + 9) + grow > 0xFFFF:
                return n
            memmove(m + end + grow, m + end, n - end)
            st16(m + end, code)
            st16(m + end + 2, dlen)
            memcpy(m + end + 4, data, dlen)
            st16(m + off + 9, ld16(m + off + 9) + grow)
            return n + grow
        off = end
    return n


def nsid_response(bytes response, bytes nsid, int limit) -> bytes:
    """*nsid* applied to a response written in Python (a copy)."""
    cdef bytearray out = bytearray(response) + bytearray(len(nsid) + 4)
    cdef long n = add_option(out, len(response), min(limit, len(out)), 3, nsid, len(nsid))
    return bytes(out[:n])


def minimal_response(bytes response) -> bytes:
    """*minimal* applied to a response written in Python (a copy)."""
    cdef bytearray out = bytearray(response)
    cdef long n = minimize(out, len(out))
    return bytes(out[:n])


cdef int _route(Engine e, int li, QueryInfo* q) noexcept:
    """The block a parsed query goes to on listener ``li`` (-1: none)."""
    cdef int k
    cdef LConf* L
    if li < 0 or li >= e.nlisteners:
        return -1
    L = &e.listeners[li]
    for k in range(L.nzones):
        if is_subdomain(q.key, q.name_len, L.zones[k].name, L.zones[k].len):
            return L.zones[k].block
    return -1


def counter_layout() -> dict:
    """Offsets of the counter row (see _includes/opsstats.pxd) for fastdns.metrics."""
    return dict(NCOUNTERS=NCOUNTERS, SECT=ST_SECT, DROPPED_SECT=ST_DROPPED_SECT,
                BLOCK_SECT=ST_BLOCK_SECT, MAX_BLOCKS=ST_MAX_BLOCKS, FWD=ST_FWD,
                FWD_UPSTREAMS=ST_FWD_UPSTREAMS, F_STRIDE=F_STRIDE, NTYPES=NTYPES, NSRC=NSRC,
                NDUR=NDUR, NSIZE=NSIZE, B_REQ=B_REQ, B_RCODE=B_RCODE, B_DUR=B_DUR,
                B_DUR_SUM=B_DUR_SUM, B_REQSZ=B_REQSZ, B_REQSZ_SUM=B_REQSZ_SUM,
                B_RESPSZ=B_RESPSZ, B_RESPSZ_SUM=B_RESPSZ_SUM, B_DO=B_DO, F_REQ=F_REQ,
                F_RCODE=F_RCODE, F_HC_FAIL=F_HC_FAIL, F_TIMEOUT=F_TIMEOUT, F_DUR=F_DUR,
                F_DUR_SUM=F_DUR_SUM, F_WAITING=F_WAITING, F_MC_REJECT=F_MC_REJECT,
                C_REQ_UDP=C_REQ_UDP, C_REQ_TCP=C_REQ_TCP,
                C_TABLE=C_TABLE, C_CACHE_HIT=C_CACHE_HIT, C_CACHE_MISS=C_CACHE_MISS,
                C_TO_PYTHON=C_TO_PYTHON, C_DROPPED=C_DROPPED, C_SEND_ERR=C_SEND_ERR,
                C_FORWARD=C_FORWARD, C_RCODE=C_RCODE)


cdef bint falls_through(Stage* S, QueryInfo* q) noexcept nogil:
    cdef int k
    if S.fall_all:
        return True
    for k in range(S.nfall):
        if is_subdomain(q.key, q.name_len, S.fall[k], S.fall_len[k]):
            return True
    return False


cdef enum:
    Q_BELOW = 0xFF00        # pseudo qtypes of a file entry (fastdns.plugins.file.source)
    Q_FALL = 0xFF01


cdef int encloser_find(const TableCore* T, QueryInfo* q, uint16_t zlen, const uint8_t** body,
                       size_t* blen) noexcept nogil:
    """An absent name of a zone ``zlen`` bytes long: 1 and the body that answers it
    (its closest encloser's Q_BELOW body, else ``*.<encloser>``'s), or 0 for an
    NXDOMAIN with the zone's NXDOMAIN body (key ``\\x02NX<zone>``; NULL if none)."""
    cdef uint8_t key[256]
    cdef uint16_t pos = 0, n
    cdef int r
    while q.name_len - pos > zlen:
        pos += 1 + q.key[pos]
        n = q.name_len - pos
        r = table_find(T, q.key + pos, n, Q_BELOW, body, blen)
        if r == FIND_ABSENT:
            continue
        if r == FIND_EXACT:
            return 1                # under a zone cut or a DNAME
        if n + 2 <= 255:            # the closest encloser: only its own wildcard applies
            key[0] = 1
            key[1] = 42             # '*'
            memcpy(key + 2, q.key + pos, n)
            if table_find(T, key, n + 2, q.qtype, body, blen) != FIND_ABSENT:
                return 1
        break
    body[0] = NULL
    if zlen + 3 <= 255:
        key[0] = 2
        key[1] = 78                 # 'N': upper case, no query key can be equal
        key[2] = 88                 # 'X'
        memcpy(key + 3, q.key + q.name_len - zlen, zlen)
        if table_find(T, key, zlen + 3, 0, body, blen) == FIND_ABSENT:
            body[0] = NULL
    return 0


cdef long encloser_stage(Stage* S, const TableCore* T, int zi, QueryInfo* q, int found,
                         const uint8_t* body, size_t blen, uint8_t* out, size_t cap,
                         size_t limit) noexcept nogil:
    """The table stage of a zone served as CoreDNS's *file* serves it; -2: as the
    plain table stage (no table yet, or an NXDOMAIN without its zone's body)."""
    cdef const uint8_t* b2
    cdef size_t l2
    if T == NULL:
        return -2
    if found == FIND_ABSENT:
        if encloser_find(T, q, S.auth[zi].len, &body, &blen) == 1:
            return finish_len(emit_body(q, body, blen, 0, limit, out, cap))
        if falls_through(S, q):
            return A_NEXT
        if body == NULL:
            return -2
        return finish_len(emit_body(q, body, blen, 0, limit, out, cap))
    if found == FIND_OTHER and (S.fall_all or S.nfall > 0) and falls_through(S, q) \
            and table_find(T, q.key, q.name_len, Q_FALL, &b2, &l2) == FIND_EXACT:
        return A_NEXT               # an empty non-terminal: CoreDNS falls through too
    return finish_len(emit_body(q, body, blen, 0, limit, out, cap))


cdef int wildcard_find(const TableCore* T, QueryInfo* q, const uint8_t** body,
                       size_t* blen) noexcept nogil:
    """``*.<parent>`` for an absent name (its first label replaced by ``*``)."""
    cdef uint8_t key[256]
    cdef uint16_t first = 1 + q.key[0]
    if q.key[0] == 0 or q.name_len - first + 2 > 255:
        return FIND_ABSENT
    key[0] = 1
    key[1] = 42                     # '*'
    memcpy(key + 2, q.key + first, q.name_len - first)
    return table_find(T, key, q.name_len - first + 2, q.qtype, body, blen)


cdef long pod_insecure(Stage* B, const TableCore* T, int zi, QueryInfo* q, uint8_t* out,
                       size_t cap, size_t limit) noexcept nogil:
    """``a-b-c-d.<ns>.pod.<zone>`` under ``pods insecure``; -2: not a pod name."""
    cdef uint16_t rel = q.name_len - B.auth[zi].len     # bytes of labels before the zone
    cdef uint16_t starts[3]         # the last three labels before the zone (ring)
    cdef int nl = 0, ip_at, ns_at, alen
    cdef uint16_t pos = 0
    cdef uint8_t addr[16]
    cdef const uint8_t* body
    cdef size_t blen
    cdef Writer w
    while pos < rel:
        starts[nl % 3] = pos
        nl += 1
        pos += 1 + q.key[pos]
    if nl < 3:
        return -2
    # the label right before the zone must be "pod" (any depth: not a pod name otherwise)
    if not (q.key[starts[(nl - 1) % 3]] == 3
            and memcmp(q.key + starts[(nl - 1) % 3] + 1, b"pod", 3) == 0):
        return -2
    if B.auth[zi].nx == NULL:
        return -2
    if nl > 5:
        return finish_len(emit_body(q, B.auth[zi].nx, B.auth[zi].nx_len, 0, limit, out, cap))
    # the namespace must exist: <ns>.pod.<zone> is compiled when it does
    ns_at = starts[(nl - 2) % 3]
    if T == NULL or table_find(T, q.key + ns_at, q.name_len - ns_at, 0, &body, &blen) == FIND_ABSENT:
        return finish_len(emit_body(q, B.auth[zi].nx, B.auth[zi].nx_len, 0, limit, out, cap))
    ip_at = starts[(nl - 3) % 3]
    alen = undash_ip(q.key + ip_at + 1, q.key[ip_at], addr)
    if alen == 0:
        return finish_len(emit_body(q, B.auth[zi].nx, B.auth[zi].nx_len, 0, limit, out, cap))
    if (alen == 4 and q.qtype == T_A) or (alen == 16 and q.qtype == T_AAAA):
        w_init(&w, out, cap, limit)
        w_header(&w, q.id, F_QR | F_AA | (q.flags & (0x7800 | F_RD | F_CD)), 0)
        w_question(&w, q.raw, q.name_len, q.qtype, q.qclass)
        if q.edns:
            w.reserve = 11
        w_rr_raw(&w, SEC_ANSWER, q.raw, q.name_len, q.qtype, 1, B.pod_ttl, addr, alen)
        if q.edns:
            w_opt(&w, EDNS_UDP, q.do_bit)
        return finish_len(w_finish(&w))
    if q.qtype == T_SRV or q.qtype == 251 or q.qtype == 252:
        return A_MISS       # SRV / AXFR on pod names: the Python reference answers
    return finish_len(emit_body(q, B.auth[zi].nodata, B.auth[zi].nodata_len, 0, limit,
                                out, cap))


cdef inline const uint8_t* _addr_bytes(sockaddr_storage* ss) noexcept:
    """The address bytes (4 or 16) of an IPv4 / IPv6 socket address."""
    if ss.ss_family == AF_INET:
        return <const uint8_t*>&(<sockaddr_in*>ss).sin_addr
    return (<sockaddr_in6*>ss).sin6_addr.s6_addr


cdef object _address(sockaddr_storage* ss):
    cdef char text[64]
    cdef sockaddr_in* s4
    cdef sockaddr_in6* s6
    if ss.ss_family == AF_INET:
        s4 = <sockaddr_in*>ss
        inet_ntop(AF_INET, &s4.sin_addr, text, sizeof(text))
        return (text.decode(), ntohs(s4.sin_port))
    s6 = <sockaddr_in6*>ss
    inet_ntop(AF_INET6, &s6.sin6_addr, text, sizeof(text))
    return (text.decode(), ntohs(s6.sin6_port), 0, s6.sin6_scope_id)


# -- local: localhost and the loopback reverse zones (CoreDNS's plugin/local) -------------

cdef uint32_t LOCAL_TTL = 604800
# the zones, as lower-case wire names
cdef const uint8_t* LOCAL_ZONES[4]
cdef uint16_t LOCAL_ZONE_LEN[4]
LOCAL_ZONES[0] = b"\x09localhost\x00"
LOCAL_ZONE_LEN[0] = 11
LOCAL_ZONES[1] = b"\x010\x07in-addr\x04arpa\x00"
LOCAL_ZONE_LEN[1] = 16
LOCAL_ZONES[2] = b"\x03127\x07in-addr\x04arpa\x00"
LOCAL_ZONE_LEN[2] = 18
LOCAL_ZONES[3] = b"\x03255\x07in-addr\x04arpa\x00"
LOCAL_ZONE_LEN[3] = 18
cdef const uint8_t* LOCAL_PTR = b"\x011\x010\x010\x03127\x07in-addr\x04arpa\x00"
cdef uint16_t LOCAL_PTR_LEN = 24


cdef void local_soa(Writer* w, int sec, const uint8_t* owner, size_t olen) noexcept nogil:
    w_rr_soa(w, sec, owner, olen, LOCAL_TTL, LOCAL_ZONES[0], 11,
             b"\x04root\x09localhost\x00", 16, 1, 0, 0, 0, LOCAL_TTL)


cdef long local_stage(bint prefix, QueryInfo* q, uint8_t* out, size_t cap,
                      size_t limit) noexcept nogil:
    """CoreDNS's *local*: ``localhost.`` A/AAAA, names under it (and, with
    ``localhost_prefix``, ``localhost.<anything>``) answered as localhost,
    ``1.0.0.127.in-addr.arpa. PTR localhost.``, SOA/NS at the four apexes,
    NODATA/NXDOMAIN with the SOA otherwise; TTL 604800, not authoritative."""
    cdef Writer w
    cdef int z = -1, k
    cdef bint under_localhost, apex
    cdef const uint8_t* zone_owner
    cdef size_t nl = q.name_len
    cdef uint8_t v4[4]
    cdef uint8_t v6[16]
    under_localhost = nl > 11 and memcmp(q.key + nl - 11, LOCAL_ZONES[0], 11) == 0 \
        and is_subdomain(q.key, nl, LOCAL_ZONES[0], 11)
    if not under_localhost and prefix and nl > 11 and memcmp(q.key, b"\x09localhost", 10) == 0:
        under_localhost = True
    if not under_localhost:
        for k in range(4):
            if is_subdomain(q.key, nl, LOCAL_ZONES[k], LOCAL_ZONE_LEN[k]):
                z = k
                break
        if z < 0:
            return A_NEXT
    w_init(&w, out, cap, limit)
    w_header(&w, q.id, F_QR | (q.flags & (0x7800 | F_RD | F_CD)), 0)
    w_question(&w, q.raw, nl, q.qtype, q.qclass)
    if q.edns:
        w.reserve = 11
    v4[0] = 127
    v4[1] = 0
    v4[2] = 0
    v4[3] = 1
    memset(v6, 0, 16)
    v6[15] = 1
    if under_localhost:
        if q.qtype == T_A:
            w_rr_raw(&w, SEC_ANSWER, q.raw, nl, T_A, 1, LOCAL_TTL, v4, 4)
        elif q.qtype == T_AAAA:
            w_rr_raw(&w, SEC_ANSWER, q.raw, nl, T_AAAA, 1, LOCAL_TTL, v6, 16)
        else:
            local_soa(&w, SEC_AUTHORITY, q.raw, nl)
    else:
        apex = nl == LOCAL_ZONE_LEN[z]
        zone_owner = q.raw + nl - LOCAL_ZONE_LEN[z]     # the zone as the query spelled it
        if apex:
            if q.qtype == T_A and z == 0:
                w_rr_raw(&w, SEC_ANSWER, q.raw, nl, T_A, 1, LOCAL_TTL, v4, 4)
            elif q.qtype == T_AAAA and z == 0:
                w_rr_raw(&w, SEC_ANSWER, q.raw, nl, T_AAAA, 1, LOCAL_TTL, v6, 16)
            elif q.qtype == 6:
                local_soa(&w, SEC_ANSWER, q.raw, nl)
            elif q.qtype == 2:
                w_rr_name(&w, SEC_ANSWER, q.raw, nl, 2, LOCAL_TTL, LOCAL_ZONES[0], 11)
            else:
                local_soa(&w, SEC_AUTHORITY, q.raw, nl)
        elif nl == LOCAL_PTR_LEN and memcmp(q.key, LOCAL_PTR, nl) == 0:
            if q.qtype == 12:
                w_rr_name(&w, SEC_ANSWER, q.raw, nl, 12, LOCAL_TTL, LOCAL_ZONES[0], 11)
            else:
                local_soa(&w, SEC_AUTHORITY, zone_owner, LOCAL_ZONE_LEN[z])
        else:
            w.rcode = 3
            local_soa(&w, SEC_AUTHORITY, zone_owner, LOCAL_ZONE_LEN[z])
    if q.edns:
        w_opt(&w, EDNS_UDP, q.do_bit)
    return finish_len(w_finish(&w))
