# The C-level load engine of fastdns-bench: its state, shared by nothing else.
#
# Work is a list of *lookups*; a lookup is a chain of *candidates* (what one
# glibc res_search step sends: one query, or A and AAAA in parallel over one
# socket); a plain query file is lookups of one candidate of one query.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int16_t, int32_t, int64_t, uint64_t
from net cimport (mmsghdr, iovec, pollfd, timespec, socklen_t, sockaddr, socket, connect,
                 setsockopt, getsockopt, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET,
                 SO_ERROR, IPPROTO_TCP, TCP_NODELAY, close)

cdef extern from "<poll.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int ppoll(pollfd* fds, unsigned long nfds, const timespec* tmo, const sigset_t* sigmask)

cdef extern from "<errno.h>" nogil:
    int ECONNREFUSED
    int EINPROGRESS

cdef enum:
    BATCH = 64              # datagrams per sendmmsg/recvmmsg call
    PKT_MAX = 512           # largest query we send
    RBUF = 2048             # receive buffer per datagram (header+question is all we read)
    NIDS = 65536            # DNS IDs per socket
    L_FREE = 65536          # list sentinels after the 65536 ID slots
    L_OUT = 65537
    L_DEAD = 65538
    NSLOTS = 65539
    HIST_FINE = 100000      # 1 us buckets up to 100 ms
    HIST_N = 200000         # then 1 ms buckets up to 100 s
    NRCODE = 16
    ST_FREE = 0
    ST_OUT = 1
    ST_DEAD = 2             # timed out; an answer now counts as late
    OBUF = 65536            # TCP: queued frames per connection
    IBUF = 131072           # TCP: receive stream buffer (any frame, 2 + 65535, fits)
    C_UP = 0                # TCP connection states
    C_CONNECTING = 1
    C_DOWN = 2
    RETRY_NS = 100000000    # TCP: wait before reconnecting after a failed connect

cdef struct Slot:
    int64_t t_lat           # latency is measured from here (intended time in open loop)
    int64_t t_sent          # timeouts are measured from here
    uint32_t lookup
    uint32_t pkt
    uint32_t prev
    uint32_t next
    uint8_t state
    uint8_t which           # 0: first query of the candidate, 1: second
    uint8_t unsent          # TCP: queued, not yet wholly written to the connection

cdef struct Sock:
    int fd
    Slot* slots             # NSLOTS
    uint32_t nfree
    int nout                # queued, not yet sent
    mmsghdr smsg[BATCH]
    iovec siov[BATCH]
    uint8_t* sbuf           # BATCH * PKT_MAX
    mmsghdr rmsg[BATCH]
    iovec riov[BATCH]
    uint8_t* rbuf           # BATCH * RBUF
    uint8_t* rctl           # BATCH * RCTL: each answer's kernel receive time (SO_TIMESTAMPNS)
    bint kts                # the kernel stamps this socket's answers
    # TCP only
    int conn                # C_UP, C_CONNECTING, C_DOWN
    int64_t retry_at        # C_DOWN: reconnect from then; C_CONNECTING: give up then
    uint8_t* obuf           # OBUF bytes of frames: [0, opos) written, [0, odone) counted
    uint32_t olen
    uint32_t opos
    uint32_t odone
    uint8_t* ibuf           # IBUF bytes of received stream, [0, ilen) not parsed yet
    uint32_t ilen

cdef struct Lookup:
    int64_t t_start
    uint32_t item
    int32_t cand
    uint8_t pending
    uint8_t lost
    int16_t rc[2]
    uint16_t an[2]
    uint8_t active

cdef struct Counters:
    uint64_t sent
    uint64_t answered
    uint64_t lost
    uint64_t late
    uint64_t unexpected
    uint64_t truncated
    uint64_t refused        # ICMP port unreachable reports
    uint64_t send_errors
    uint64_t stalls         # a lookup waited for a free ID (or TCP buffer space)
    uint64_t lookups_started
    uint64_t lookups_ok
    uint64_t lookups_negative
    uint64_t lookups_lost
    uint64_t tcp_connects   # TCP connections established (the first ones included)
    uint64_t tcp_closed     # TCP connections closed by the server or by an error
    uint64_t connect_errors # TCP connection attempts that failed
    uint64_t rcodes[NRCODE]
    int64_t lat_max_ns
    int64_t lat_sum_ns
    int64_t lk_max_ns
    int64_t lk_sum_ns


cdef class Blaster:
    cdef Sock* socks
    cdef int nsock
    cdef pollfd* pfds
    cdef bint tcp
    cdef uint8_t addr[128]          # TCP: the server's sockaddr, for reconnecting
    cdef socklen_t addrlen
    cdef int family
    # queries
    cdef uint8_t* pkts
    cdef uint32_t* pkt_off
    cdef uint16_t* pkt_len
    cdef uint16_t* pkt_qend
    cdef uint32_t npkt
    # candidates and lookups
    cdef int32_t* cand_pkt          # 2 per candidate, -1 = none
    cdef int32_t* cand_fail
    cdef int32_t* cand_done
    cdef int32_t* item_first
    cdef uint32_t nitem
    cdef uint32_t next_item
    cdef Lookup* lookups
    cdef uint32_t nlookups
    cdef uint32_t* lfree
    cdef uint32_t nlfree
    cdef uint32_t* deferred
    cdef uint32_t ndeferred
    cdef uint32_t active
    # schedule
    cdef int64_t t0
    cdef int64_t t_end
    cdef int64_t timeout_ns
    cdef double rate
    cdef uint32_t concurrency
    cdef uint64_t scheduled
    cdef bint finished
    # results
    cdef Counters c
    cdef uint64_t* hist
    cdef uint64_t* lhist
    cdef uint64_t* ps                # per second: sent, answered, lost, late, lookups
    cdef uint32_t nsec

    cdef int _step(self, int64_t until) noexcept nogil
    cdef uint64_t _due(self, int64_t now) noexcept nogil
    cdef bint _no_dead(self) noexcept nogil
    cdef void _start_lookups(self, int64_t now) noexcept nogil
    cdef bint _send_candidate(self, uint32_t l, int64_t now) noexcept nogil
    cdef void _flush(self, Sock* s, int64_t now) noexcept nogil
    cdef int _receive(self, Sock* s) noexcept nogil
    cdef void _answer(self, Sock* s, const uint8_t* b, uint32_t n, int64_t now) noexcept nogil
    cdef void _lookup_reply(self, uint32_t l, int which, int rcode, int ancount, int64_t now) noexcept nogil
    cdef void _lookup_lost(self, uint32_t l, int64_t now) noexcept nogil
    cdef void _lookup_decide(self, uint32_t l, int64_t now) noexcept nogil
    cdef void _lookup_finish(self, uint32_t l, int64_t now) noexcept nogil
    cdef void _expire(self, Sock* s, int64_t now) noexcept nogil
    cdef void _tick(self, int64_t now, int what, uint64_t n) noexcept nogil
    cdef void _tcp_open(self, Sock* s, int64_t now) noexcept nogil
    cdef void _tcp_check(self, Sock* s, int64_t now) noexcept nogil
    cdef void _tcp_failed(self, Sock* s, int64_t now) noexcept nogil
    cdef bint _tcp_flush(self, Sock* s, int64_t now) noexcept nogil
    cdef int _tcp_receive(self, Sock* s) noexcept nogil
    cdef void _tcp_close(self, Sock* s, int64_t now) noexcept nogil
