# cython: language_level=3
"""C-level load engine of fastdns-bench: sendmmsg/recvmmsg on connected,
non-blocking UDP sockets, or send/recv on non-blocking TCP connections
(RFC 7766 framing, pipelined), no Python object per packet.

Each socket owns the 16-bit ID space: 65536 slots kept on three intrusive
lists — free (FIFO, so an ID is reused as late as possible), outstanding (in
send order, so timeouts are found at the head) and dead (timed out; an answer
to a dead slot counts as *late*, not answered, until ``2 * timeout`` after it
was sent, then the ID is reused).  An answer is matched by ID *and* by its
question section (byte-exact against what was sent), anything else counts as
unexpected.

Work is a list of lookups (see ``_blast.pxd``); a lookup walks its candidate
chain the way glibc's ``res_search`` does: stop at the first positive answer
(NOERROR with answers in either reply), go on to ``cand_fail`` after
NXDOMAIN / NODATA / SERVFAIL, to ``cand_done`` after any other rcode.

Closed loop keeps ``concurrency`` lookups in flight; open loop starts lookup
``k`` at ``t0 + k / rate`` and measures its latency from that intended time,
even if it could only be sent later (no coordinated omission).  Over UDP the
open loop sleeps a tick (TICK_NS, 100 us) at a time and then sends what came
due and reads what came, in batches, instead of waking for every query: each
answer's time is the kernel's receive time (SO_TIMESTAMPNS), so the sleep does
not lengthen latencies, but a query is sent up to one tick after its intended
time and that wait is part of its latency (50 us on average).

TCP: each connection is a ``Sock`` with its own IDs.  Queries are framed into
the connection's output buffer and written with ``send`` (a partial write
stays queued; a query counts as *sent* once its frame is wholly written, and
its timeout runs from then).  Answers are parsed out of the stream buffer.
When the server closes a connection (or it fails), its written, unanswered
queries count as *lost* at once, the ones never written as *send_errors*, and
a new connection is opened (non-blocking ``connect``; after a failed attempt,
again ``RETRY_NS`` later).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memcmp, memset, memmove
from net cimport (mmsghdr, iovec, pollfd, timespec, sendmmsg, recvmmsg, clock_gettime, send, recv,
                  poll, CLOCK_MONOTONIC, MSG_DONTWAIT, MSG_NOSIGNAL, errno, EAGAIN, EINTR,
                  POLLIN, POLLOUT, sockaddr)
from fastdns._wire cimport ld16, st16

cdef extern from "<sys/socket.h>" nogil:
    cdef struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    int SOL_SOCKET
    int SO_TIMESTAMPNS
    int SCM_TIMESTAMPNS
    int setsockopt(int fd, int level, int name, const void* val, unsigned int vlen)
    cmsghdr* CMSG_FIRSTHDR(void* msgh)
    cmsghdr* CMSG_NXTHDR(void* msgh, cmsghdr* c)
    unsigned char* CMSG_DATA(cmsghdr* c)

cdef extern from "<time.h>" nogil:
    int CLOCK_REALTIME
    int nanosleep(const timespec* req, timespec* rem)

DEF RCTL = 64               # control bytes per answer (one SCM_TIMESTAMPNS: 32)
DEF TICK_NS = 100000        # open loop: what is due is sent, and answers read, every 100 us

cdef enum:
    PS_SENT = 0
    PS_ANSWERED = 1
    PS_LOST = 2
    PS_LATE = 3
    PS_LOOKUPS = 4
    PS_N = 5


cdef inline int64_t mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline void l_unlink(Slot* sl, uint32_t i) noexcept nogil:
    sl[sl[i].prev].next = sl[i].next
    sl[sl[i].next].prev = sl[i].prev


cdef inline void l_append(Slot* sl, uint32_t head, uint32_t i) noexcept nogil:
    cdef uint32_t p = sl[head].prev
    sl[i].prev = p
    sl[i].next = head
    sl[p].next = i
    sl[head].prev = i


cdef inline uint32_t hist_index(int64_t ns) noexcept nogil:
    cdef int64_t us = ns // 1000
    cdef int64_t ms
    if us < 0:
        return 0
    if us < HIST_FINE:
        return <uint32_t>us
    ms = us // 1000 - HIST_FINE // 1000
    if ms > HIST_N - HIST_FINE - 1:
        ms = HIST_N - HIST_FINE - 1
    return <uint32_t>(HIST_FINE + ms)


def bucket_floor_us(uint32_t index) -> int:
    """The smallest latency (µs) that falls into histogram bucket ``index``."""
    if index < HIST_FINE:
        return index
    return (index - HIST_FINE) * 1000 + HIST_FINE


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns, the clock every Blaster schedules on."""
    return mono_ns()


cdef class Blaster:
    """One process's load engine.  Build it, then call :meth:`step` until it
    returns True; read :meth:`counters`, :meth:`histogram`, :meth:`per_second`.

    ``fds``: connected non-blocking UDP sockets.  ``packets``: query wires
    concatenated (``offsets``, ``lengths``, ``qends`` = end of the question
    section).  ``cand_pkt``: 2 packet indexes per candidate (-1 = none);
    ``cand_fail`` / ``cand_done``: next candidate (-1 = end); ``item_first``:
    first candidate of each lookup.  ``rate`` > 0 selects the open loop (at
    most ``max_lookups`` lookups in flight), else ``concurrency`` lookups are
    kept in flight.

    ``tcp``: ``fds`` are connected non-blocking TCP sockets which the Blaster
    then owns (it closes them, and reopens a closed one to ``sockaddr``, the
    server's packed ``struct sockaddr``, of address family ``family``).
    """

    def __cinit__(self, fds, bytes packets, offsets, lengths, qends, cand_pkt, cand_fail,
                  cand_done, item_first, *, int concurrency, double rate, int64_t t0,
                  int64_t duration_ns, int64_t timeout_ns, int max_lookups, int first_item=0,
                  bint tcp=False, bytes sockaddr=b"", int family=0):
        cdef int i, j
        cdef Sock* s
        cdef uint32_t ncand = len(cand_fail)
        self.nsock = len(fds)
        self.tcp = tcp
        if tcp:
            if not 0 < len(sockaddr) <= 128:
                raise ValueError("tcp needs the server's sockaddr")
            memcpy(self.addr, <const char*>sockaddr, len(sockaddr))
            self.addrlen = <socklen_t>len(sockaddr)
            self.family = family
        self.npkt = len(offsets)
        self.nitem = len(item_first)
        if self.nsock < 1 or self.npkt < 1 or self.nitem < 1:
            raise ValueError("need at least one socket, one packet and one lookup")
        self.socks = <Sock*>calloc(self.nsock, sizeof(Sock))
        self.pfds = <pollfd*>calloc(self.nsock, sizeof(pollfd))
        self.pkts = <uint8_t*>malloc(len(packets) + 1)
        self.pkt_off = <uint32_t*>malloc(self.npkt * sizeof(uint32_t))
        self.pkt_len = <uint16_t*>malloc(self.npkt * sizeof(uint16_t))
        self.pkt_qend = <uint16_t*>malloc(self.npkt * sizeof(uint16_t))
        self.cand_pkt = <int32_t*>malloc(2 * ncand * sizeof(int32_t))
        self.cand_fail = <int32_t*>malloc(ncand * sizeof(int32_t))
        self.cand_done = <int32_t*>malloc(ncand * sizeof(int32_t))
        self.item_first = <int32_t*>malloc(self.nitem * sizeof(int32_t))
        self.rate = rate
        self.concurrency = concurrency
        self.nlookups = max_lookups if rate > 0 else concurrency
        if self.nlookups < 1:
            raise ValueError("concurrency must be at least 1")
        self.lookups = <Lookup*>calloc(self.nlookups, sizeof(Lookup))
        self.lfree = <uint32_t*>malloc(self.nlookups * sizeof(uint32_t))
        self.deferred = <uint32_t*>malloc(self.nlookups * sizeof(uint32_t))
        self.nsec = <uint32_t>((duration_ns + 12 * timeout_ns) // 1000000000 + 3)
        self.ps = <uint64_t*>calloc(self.nsec * PS_N, sizeof(uint64_t))
        self.hist = <uint64_t*>calloc(HIST_N, sizeof(uint64_t))
        self.lhist = <uint64_t*>calloc(HIST_N, sizeof(uint64_t))
        if (self.socks == NULL or self.pfds == NULL or self.pkts == NULL or self.lookups == NULL
                or self.ps == NULL or self.hist == NULL or self.lhist == NULL):
            raise MemoryError()
        memcpy(self.pkts, <const char*>packets, len(packets))
        for i in range(self.npkt):
            self.pkt_off[i] = offsets[i]
            self.pkt_len[i] = lengths[i]
            self.pkt_qend[i] = qends[i]
            if lengths[i] > PKT_MAX or qends[i] > lengths[i] or qends[i] < 17:
                raise ValueError(f"packet {i}: bad length")
        for i in range(ncand):
            self.cand_pkt[2 * i] = cand_pkt[2 * i]
            self.cand_pkt[2 * i + 1] = cand_pkt[2 * i + 1]
            self.cand_fail[i] = cand_fail[i]
            self.cand_done[i] = cand_done[i]
        for i in range(self.nitem):
            self.item_first[i] = item_first[i]
        for i in range(self.nlookups):
            self.lfree[i] = self.nlookups - 1 - i
        self.nlfree = self.nlookups
        self.next_item = first_item % self.nitem
        self.t0 = t0
        self.t_end = t0 + duration_ns
        self.timeout_ns = timeout_ns
        for i in range(self.nsock):
            s = &self.socks[i]
            s.fd = fds[i]
            self.pfds[i].fd = s.fd
            s.slots = <Slot*>calloc(NSLOTS, sizeof(Slot))
            if tcp:
                s.conn = C_UP
                s.obuf = <uint8_t*>malloc(OBUF)
                s.ibuf = <uint8_t*>malloc(IBUF)
                self.c.tcp_connects += 1
                if s.slots == NULL or s.obuf == NULL or s.ibuf == NULL:
                    raise MemoryError()
            else:
                s.sbuf = <uint8_t*>malloc(BATCH * PKT_MAX)
                s.rbuf = <uint8_t*>malloc(BATCH * RBUF)
                s.rctl = <uint8_t*>malloc(BATCH * RCTL)
                if s.slots == NULL or s.sbuf == NULL or s.rbuf == NULL or s.rctl == NULL:
                    raise MemoryError()
                j = 1
                # latency ends when the kernel received the answer, not when the loop
                # got to it: the open loop may then sleep a tick between reads
                s.kts = setsockopt(s.fd, SOL_SOCKET, SO_TIMESTAMPNS, &j, sizeof(j)) == 0
            for j in (L_FREE, L_OUT, L_DEAD):
                s.slots[j].prev = j
                s.slots[j].next = j
            for j in range(NIDS):
                l_append(s.slots, L_FREE, j)
            s.nfree = NIDS
            for j in range(BATCH):
                if tcp:
                    break
                s.siov[j].iov_base = s.sbuf + j * PKT_MAX
                s.smsg[j].msg_hdr.msg_iov = &s.siov[j]
                s.smsg[j].msg_hdr.msg_iovlen = 1
                s.riov[j].iov_base = s.rbuf + j * RBUF
                s.riov[j].iov_len = RBUF
                s.rmsg[j].msg_hdr.msg_iov = &s.riov[j]
                s.rmsg[j].msg_hdr.msg_iovlen = 1
                s.rmsg[j].msg_hdr.msg_control = s.rctl + j * RCTL

    def __dealloc__(self):
        cdef int i
        if self.socks != NULL:
            for i in range(self.nsock):
                if self.tcp and self.socks[i].fd >= 0:
                    close(self.socks[i].fd)
                free(self.socks[i].slots)
                free(self.socks[i].sbuf)
                free(self.socks[i].rbuf)
                free(self.socks[i].rctl)
                free(self.socks[i].obuf)
                free(self.socks[i].ibuf)
        free(self.socks); free(self.pfds); free(self.pkts); free(self.pkt_off)
        free(self.pkt_len); free(self.pkt_qend); free(self.cand_pkt); free(self.cand_fail)
        free(self.cand_done); free(self.item_first); free(self.lookups); free(self.lfree)
        free(self.deferred); free(self.ps); free(self.hist); free(self.lhist)

    def step(self, int64_t until_ns) -> bool:
        """Run (without the GIL) until ``until_ns`` (monotonic) or the end;
        True once the run is over: sending stopped and nothing is in flight."""
        cdef int r
        with nogil:
            r = self._step(until_ns)
        return r == 1

    # ------------------------------------------------------------------ loop

    cdef int _step(self, int64_t until) noexcept nogil:
        cdef int64_t now, wait, due
        cdef int i, progress
        cdef uint32_t n, k
        cdef timespec ts
        cdef Sock* s
        while True:
            now = mono_ns()
            if self.finished:
                return 1
            if now >= until:
                return 0
            progress = 0
            if self.tcp:
                for i in range(self.nsock):
                    s = &self.socks[i]
                    if s.conn == C_CONNECTING:
                        self._tcp_check(s, now)
                    elif s.conn == C_DOWN and now >= s.retry_at:
                        self._tcp_open(s, now)
            if self.ndeferred:
                n = self.ndeferred
                self.ndeferred = 0
                for k in range(n):
                    self._send_candidate(self.deferred[k], now)
            if now < self.t_end:
                self._start_lookups(now)
            elif self.rate > 0 and self.scheduled < self._due(self.t_end - 1):
                self._start_lookups(self.t_end - 1)   # what was due before the end
            elif self.active == 0 and self.ndeferred == 0 and self._no_dead():
                self.finished = True
                return 1
            elif now > self.t_end + 12 * self.timeout_ns:
                self.c.lookups_lost += self.active
                self.finished = True
                return 1
            if self.tcp:
                for i in range(self.nsock):
                    s = &self.socks[i]
                    if s.opos < s.olen and s.conn == C_UP and self._tcp_flush(s, now):
                        progress = 1
                for i in range(self.nsock):
                    if self._tcp_receive(&self.socks[i]) > 0:
                        progress = 1
            else:
                for i in range(self.nsock):
                    if self.socks[i].nout:
                        self._flush(&self.socks[i], now)
                        progress = 1
                for i in range(self.nsock):
                    if self._receive(&self.socks[i]) > 0:
                        progress = 1
            now = mono_ns()
            for i in range(self.nsock):
                self._expire(&self.socks[i], now)
            if progress:
                continue
            # idle: sleep until a socket is readable, the next scheduled send,
            # or 1 ms (timeouts are checked at least that often)
            wait = 1000000
            if self.rate > 0 and now < self.t_end and self.nlfree > 0:
                due = self.t0 + <int64_t>(<double>self.scheduled * 1e9 / self.rate)
                if due - now < wait:
                    wait = due - now
            if self.ndeferred:
                wait = 20000
            if until - now < wait:
                wait = until - now
            if self.tcp:
                for i in range(self.nsock):
                    s = &self.socks[i]
                    self.pfds[i].fd = s.fd if s.conn != C_DOWN else -1
                    self.pfds[i].events = POLLIN
                    if s.conn == C_CONNECTING or s.opos < s.olen:
                        self.pfds[i].events = POLLIN | POLLOUT
                    if s.conn == C_DOWN and s.retry_at - now < wait:
                        wait = s.retry_at - now
                    elif s.conn == C_CONNECTING and wait > 1000000:
                        wait = 1000000
            if wait <= 0:
                continue
            if self.rate > 0 and not self.tcp and self.socks[0].kts and now < self.t_end:
                # open loop: sleep a whole tick (answers are stamped by the kernel), then
                # send what came due and read what came, in batches
                if wait < TICK_NS:
                    wait = TICK_NS
                if until - now < wait:
                    wait = until - now
                ts.tv_sec = wait // 1000000000
                ts.tv_nsec = wait % 1000000000
                nanosleep(&ts, NULL)
                continue
            for i in range(self.nsock):
                if not self.tcp:
                    self.pfds[i].events = POLLIN
                self.pfds[i].revents = 0
            ts.tv_sec = wait // 1000000000
            ts.tv_nsec = wait % 1000000000
            ppoll(self.pfds, self.nsock, &ts, NULL)

    cdef uint64_t _due(self, int64_t now) noexcept nogil:
        # open loop: lookups whose intended start time is <= now
        if now < self.t0:
            return 0
        return <uint64_t>(<double>(now - self.t0) * self.rate / 1e9) + 1

    cdef bint _no_dead(self) noexcept nogil:
        # timed-out queries whose late answer may still come (2 * timeout after sending)
        cdef int i
        for i in range(self.nsock):
            if self.socks[i].slots[L_DEAD].next != L_DEAD:
                return False
        return True

    cdef void _start_lookups(self, int64_t now) noexcept nogil:
        cdef uint64_t due
        cdef uint32_t l
        cdef int64_t t_start
        cdef Lookup* lk
        if self.rate > 0:
            due = self._due(now)
        else:
            due = self.scheduled + self.concurrency - self.active
        while self.scheduled < due and self.nlfree > 0:
            if self.rate > 0:
                t_start = self.t0 + <int64_t>(<double>self.scheduled * 1e9 / self.rate)
            else:
                t_start = now
            self.nlfree -= 1
            l = self.lfree[self.nlfree]
            lk = &self.lookups[l]
            lk.item = self.next_item
            self.next_item += 1
            if self.next_item >= self.nitem:
                self.next_item = 0
            lk.cand = self.item_first[lk.item]
            lk.t_start = t_start
            lk.active = 1
            self.active += 1
            self.scheduled += 1
            self.c.lookups_started += 1
            self._send_candidate(l, now)

    cdef bint _send_candidate(self, uint32_t l, int64_t now) noexcept nogil:
        cdef Lookup* lk = &self.lookups[l]
        cdef Sock* s = &self.socks[l % self.nsock]
        cdef int32_t c = lk.cand
        cdef int need = 2 if self.cand_pkt[2 * c + 1] >= 0 else 1
        cdef int w
        cdef uint32_t id, pkt
        cdef Slot* sl
        cdef int64_t t_lat = lk.t_start if c == self.item_first[lk.item] else now
        cdef uint8_t* f
        if self.tcp and (s.conn != C_UP or s.nfree < <uint32_t>need
                         or OBUF - (s.olen - s.odone) < <uint32_t>(need * (PKT_MAX + 2))):
            # no connection (being reopened: not a stall) or no room
            self.deferred[self.ndeferred] = l
            self.ndeferred += 1
            if s.conn == C_UP:
                self.c.stalls += 1
            return False
        if s.nfree < <uint32_t>need:
            self.deferred[self.ndeferred] = l
            self.ndeferred += 1
            self.c.stalls += 1
            return False
        if self.tcp and s.olen + need * (PKT_MAX + 2) > OBUF:
            # make room: drop the counted (wholly written) frames from the front
            memmove(s.obuf, s.obuf + s.odone, s.olen - s.odone)
            s.olen -= s.odone
            s.opos -= s.odone
            s.odone = 0
        lk.pending = need
        lk.lost = 0
        lk.rc[0] = -1
        lk.rc[1] = -1
        lk.an[0] = 0
        lk.an[1] = 0
        for w in range(need):
            if not self.tcp and s.nout == BATCH:
                self._flush(s, now)
            pkt = <uint32_t>self.cand_pkt[2 * c + w]
            id = s.slots[L_FREE].next
            l_unlink(s.slots, id)
            l_append(s.slots, L_OUT, id)
            s.nfree -= 1
            sl = &s.slots[id]
            sl.t_lat = t_lat
            sl.t_sent = now
            sl.lookup = l
            sl.pkt = pkt
            sl.state = ST_OUT
            sl.which = w
            if self.tcp:
                sl.unsent = 1
                f = s.obuf + s.olen
                st16(f, self.pkt_len[pkt])
                memcpy(f + 2, self.pkts + self.pkt_off[pkt], self.pkt_len[pkt])
                st16(f + 2, <uint16_t>id)
                s.olen += 2 + self.pkt_len[pkt]
                continue
            sl.unsent = 0
            memcpy(s.sbuf + s.nout * PKT_MAX, self.pkts + self.pkt_off[pkt], self.pkt_len[pkt])
            st16(s.sbuf + s.nout * PKT_MAX, <uint16_t>id)
            s.siov[s.nout].iov_len = self.pkt_len[pkt]
            s.nout += 1
        return True

    cdef void _flush(self, Sock* s, int64_t now) noexcept nogil:
        cdef int off = 0
        cdef int r, e
        cdef uint32_t id
        cdef pollfd pf
        cdef timespec ts
        cdef Slot* sl
        while off < s.nout:
            r = sendmmsg(s.fd, &s.smsg[off], s.nout - off, MSG_DONTWAIT)
            if r > 0:
                off += r
                self.c.sent += r
                self._tick(now, PS_SENT, r)
                continue
            e = errno
            if e == EAGAIN or e == EINTR:
                pf.fd = s.fd
                pf.events = POLLOUT
                pf.revents = 0
                ts.tv_sec = 0
                ts.tv_nsec = 1000000
                ppoll(&pf, 1, &ts, NULL)
                continue
            if e == ECONNREFUSED:
                self.c.refused += 1
                continue
            # this datagram cannot be sent: release its slot, its lookup fails
            self.c.send_errors += 1
            id = ld16(s.sbuf + off * PKT_MAX)
            sl = &s.slots[id]
            if sl.state == ST_OUT:
                l_unlink(s.slots, id)
                l_append(s.slots, L_FREE, id)
                s.nfree += 1
                sl.state = ST_FREE
                self._lookup_lost(sl.lookup, now)
            off += 1
        s.nout = 0

    cdef int _receive(self, Sock* s) noexcept nogil:
        cdef int r, i
        cdef int64_t now, at, shift = 0
        cdef timespec rt
        cdef cmsghdr* cm
        cdef timespec* kt
        if s.kts:
            for i in range(BATCH):
                s.rmsg[i].msg_hdr.msg_controllen = RCTL
        r = recvmmsg(s.fd, s.rmsg, BATCH, MSG_DONTWAIT, NULL)
        if r < 0:
            if errno == ECONNREFUSED:
                self.c.refused += 1
            return 0
        now = mono_ns()
        if s.kts and r > 0:
            clock_gettime(CLOCK_REALTIME, &rt)
            shift = <int64_t>rt.tv_sec * 1000000000 + rt.tv_nsec - now     # realtime - monotonic
        for i in range(r):
            at = now
            if s.kts:
                cm = CMSG_FIRSTHDR(&s.rmsg[i].msg_hdr)
                while cm != NULL:
                    if cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == SCM_TIMESTAMPNS:
                        kt = <timespec*>CMSG_DATA(cm)
                        at = <int64_t>kt.tv_sec * 1000000000 + kt.tv_nsec - shift
                        if at > now:
                            at = now
                        break
                    cm = CMSG_NXTHDR(&s.rmsg[i].msg_hdr, cm)
            self._answer(s, s.rbuf + i * RBUF, s.rmsg[i].msg_len, at)
        return r

    cdef void _answer(self, Sock* s, const uint8_t* b, uint32_t n, int64_t now) noexcept nogil:
        cdef uint32_t id, qend
        cdef uint16_t flags
        cdef Slot* sl
        cdef const uint8_t* q
        cdef int rcode
        cdef int64_t lat
        if n < 12:
            self.c.unexpected += 1
            return
        id = ld16(b)
        flags = ld16(b + 2)
        sl = &s.slots[id]
        if sl.state == ST_FREE or not (flags & 0x8000):
            self.c.unexpected += 1
            return
        q = self.pkts + self.pkt_off[sl.pkt]
        qend = self.pkt_qend[sl.pkt]
        if n < qend or ld16(b + 4) != 1 or memcmp(b + 12, q + 12, qend - 12) != 0:
            self.c.unexpected += 1
            return
        l_unlink(s.slots, id)
        l_append(s.slots, L_FREE, id)
        s.nfree += 1
        if sl.state == ST_DEAD:
            sl.state = ST_FREE
            self.c.late += 1
            self._tick(now, PS_LATE, 1)
            return
        sl.state = ST_FREE
        rcode = flags & 0xF
        self.c.answered += 1
        self.c.rcodes[rcode] += 1
        if flags & 0x0200:
            self.c.truncated += 1
        self._tick(now, PS_ANSWERED, 1)
        lat = now - sl.t_lat
        self.hist[hist_index(lat)] += 1
        self.c.lat_sum_ns += lat
        if lat > self.c.lat_max_ns:
            self.c.lat_max_ns = lat
        self._lookup_reply(sl.lookup, sl.which, rcode, ld16(b + 6), now)

    cdef void _expire(self, Sock* s, int64_t now) noexcept nogil:
        cdef Slot* sl = s.slots
        cdef uint32_t i = sl[L_OUT].next
        cdef uint32_t nxt
        # (TCP: frames not wholly written are the list's tail; their clock has not started)
        while i != L_OUT and not sl[i].unsent and now - sl[i].t_sent >= self.timeout_ns:
            nxt = sl[i].next
            l_unlink(sl, i)
            l_append(sl, L_DEAD, i)
            sl[i].state = ST_DEAD
            self.c.lost += 1
            self._tick(now, PS_LOST, 1)
            self._lookup_lost(sl[i].lookup, now)
            i = nxt
        i = sl[L_DEAD].next
        while i != L_DEAD and now - sl[i].t_sent >= 2 * self.timeout_ns:
            nxt = sl[i].next
            l_unlink(sl, i)
            l_append(sl, L_FREE, i)
            sl[i].state = ST_FREE
            s.nfree += 1
            i = nxt

    # --------------------------------------------------------------- lookups

    cdef void _lookup_reply(self, uint32_t l, int which, int rcode, int ancount, int64_t now) noexcept nogil:
        cdef Lookup* lk = &self.lookups[l]
        lk.rc[which] = rcode
        lk.an[which] = ancount
        lk.pending -= 1
        if lk.pending == 0:
            self._lookup_decide(l, now)

    cdef void _lookup_lost(self, uint32_t l, int64_t now) noexcept nogil:
        cdef Lookup* lk = &self.lookups[l]
        lk.lost = 1
        lk.pending -= 1
        if lk.pending == 0:
            self._lookup_decide(l, now)

    cdef void _lookup_decide(self, uint32_t l, int64_t now) noexcept nogil:
        cdef Lookup* lk = &self.lookups[l]
        cdef int32_t c = lk.cand
        cdef bint two = self.cand_pkt[2 * c + 1] >= 0
        cdef int r
        cdef int32_t nxt
        cdef int64_t lat
        if lk.lost:
            self.c.lookups_lost += 1
            self._lookup_finish(l, now)
            return
        if (lk.rc[0] == 0 and lk.an[0] > 0) or (two and lk.rc[1] == 0 and lk.an[1] > 0):
            self.c.lookups_ok += 1
        else:
            r = lk.rc[1] if (two and lk.rc[0] == 0) else lk.rc[0]
            nxt = self.cand_fail[c] if (r == 0 or r == 2 or r == 3) else self.cand_done[c]
            if nxt >= 0:
                lk.cand = nxt
                self._send_candidate(l, now)
                return
            self.c.lookups_negative += 1
        lat = now - lk.t_start
        self.lhist[hist_index(lat)] += 1
        self.c.lk_sum_ns += lat
        if lat > self.c.lk_max_ns:
            self.c.lk_max_ns = lat
        self._lookup_finish(l, now)

    cdef void _lookup_finish(self, uint32_t l, int64_t now) noexcept nogil:
        self.lookups[l].active = 0
        self.lfree[self.nlfree] = l
        self.nlfree += 1
        self.active -= 1
        self._tick(now, PS_LOOKUPS, 1)

    cdef void _tick(self, int64_t now, int what, uint64_t n) noexcept nogil:
        cdef int64_t sec = (now - self.t0) // 1000000000
        if sec < 0:
            sec = 0
        if sec >= self.nsec:
            sec = self.nsec - 1
        self.ps[sec * PS_N + what] += n

    # ------------------------------------------------------------------- TCP

    cdef void _tcp_open(self, Sock* s, int64_t now) noexcept nogil:
        cdef int one = 1
        cdef int fd = socket(self.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:
            self.c.connect_errors += 1
            s.retry_at = now + RETRY_NS
            return
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
        s.fd = fd
        if connect(fd, <const sockaddr*>self.addr, self.addrlen) == 0:
            s.conn = C_UP
            self.c.tcp_connects += 1
        elif errno == EINPROGRESS:
            s.conn = C_CONNECTING
            s.retry_at = now + self.timeout_ns       # connect deadline
        else:
            self._tcp_failed(s, now)

    cdef void _tcp_check(self, Sock* s, int64_t now) noexcept nogil:
        # a non-blocking connect in progress: done, failed, or timed out?
        cdef pollfd pf
        cdef int err = 0
        cdef socklen_t elen = sizeof(int)
        pf.fd = s.fd
        pf.events = POLLOUT
        pf.revents = 0
        if poll(&pf, 1, 0) > 0:
            getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &elen)
            if err == 0:
                s.conn = C_UP
                self.c.tcp_connects += 1
                return
        elif now < s.retry_at:
            return
        self._tcp_failed(s, now)

    cdef void _tcp_failed(self, Sock* s, int64_t now) noexcept nogil:
        # a connect that failed or timed out: close, retry after RETRY_NS
        close(s.fd)
        s.fd = -1
        s.conn = C_DOWN
        s.retry_at = now + RETRY_NS
        self.c.connect_errors += 1

    cdef bint _tcp_flush(self, Sock* s, int64_t now) noexcept nogil:
        # write queued frames; count those now wholly written as sent
        cdef ssize_t r
        cdef uint32_t flen, id, n = 0
        cdef bint wrote = False
        while s.opos < s.olen:
            r = send(s.fd, s.obuf + s.opos, s.olen - s.opos, MSG_DONTWAIT | MSG_NOSIGNAL)
            if r > 0:
                s.opos += <uint32_t>r
                wrote = True
                continue
            if r < 0 and errno == EINTR:
                continue
            if r < 0 and errno == EAGAIN:
                break
            self._tcp_close(s, now)
            return True
        while s.odone + 2 <= s.opos:
            flen = ld16(s.obuf + s.odone)
            if s.odone + 2 + flen > s.opos:
                break
            id = ld16(s.obuf + s.odone + 2)
            s.slots[id].unsent = 0
            s.slots[id].t_sent = now
            s.odone += 2 + flen
            n += 1
        if n:
            self.c.sent += n
            self._tick(now, PS_SENT, n)
        if s.odone == s.olen:
            s.olen = 0
            s.opos = 0
            s.odone = 0
        return wrote

    cdef int _tcp_receive(self, Sock* s) noexcept nogil:
        # read what the connection has; answer every complete frame
        cdef ssize_t r
        cdef uint32_t pos = 0, flen
        cdef int64_t now
        if s.conn != C_UP:
            return 0
        r = recv(s.fd, s.ibuf + s.ilen, IBUF - s.ilen, MSG_DONTWAIT)
        if r < 0 and (errno == EAGAIN or errno == EINTR):
            return 0
        now = mono_ns()
        if r <= 0:                       # closed by the server, or reset
            self._tcp_close(s, now)
            return 1
        s.ilen += <uint32_t>r
        while s.ilen - pos >= 2:
            flen = ld16(s.ibuf + pos)
            if s.ilen - pos - 2 < flen:
                break
            self._answer(s, s.ibuf + pos + 2, flen, now)
            pos += 2 + flen
        if pos:
            memmove(s.ibuf, s.ibuf + pos, s.ilen - pos)
            s.ilen -= pos
        return 1

    cdef void _tcp_close(self, Sock* s, int64_t now) noexcept nogil:
        # the connection is gone: its written queries are lost, the others unsent
        cdef Slot* sl = s.slots
        cdef uint32_t i, nxt
        if s.fd >= 0:
            close(s.fd)
        s.fd = -1
        s.conn = C_DOWN
        s.retry_at = now
        self.c.tcp_closed += 1
        s.olen = 0
        s.opos = 0
        s.odone = 0
        s.ilen = 0
        i = sl[L_OUT].next
        while i != L_OUT:
            nxt = sl[i].next
            l_unlink(sl, i)
            l_append(sl, L_FREE, i)
            s.nfree += 1
            sl[i].state = ST_FREE
            if sl[i].unsent:
                sl[i].unsent = 0
                self.c.send_errors += 1
            else:
                self.c.lost += 1
                self._tick(now, PS_LOST, 1)
            self._lookup_lost(sl[i].lookup, now)
            i = nxt
        i = sl[L_DEAD].next
        while i != L_DEAD:
            nxt = sl[i].next
            l_unlink(sl, i)
            l_append(sl, L_FREE, i)
            s.nfree += 1
            sl[i].state = ST_FREE
            i = nxt

    # --------------------------------------------------------------- results

    def counters(self) -> dict:
        """Totals so far (cheap: call it every second for progress)."""
        c = self.c
        return {
            "sent": c.sent, "answered": c.answered, "lost": c.lost, "late": c.late,
            "unexpected": c.unexpected, "truncated": c.truncated, "refused": c.refused,
            "send_errors": c.send_errors, "stalls": c.stalls,
            "lookups_started": c.lookups_started, "lookups_ok": c.lookups_ok,
            "lookups_negative": c.lookups_negative, "lookups_lost": c.lookups_lost,
            "tcp_connects": c.tcp_connects, "tcp_closed": c.tcp_closed,
            "connect_errors": c.connect_errors,
            "rcodes": [c.rcodes[i] for i in range(NRCODE)],
            "lat_max_ns": c.lat_max_ns, "lat_sum_ns": c.lat_sum_ns,
            "lk_max_ns": c.lk_max_ns, "lk_sum_ns": c.lk_sum_ns,
            "in_flight": self.active,
        }

    def histogram(self, str kind="query") -> dict:
        """Non-empty buckets ``{index: count}`` of the query or lookup latency."""
        cdef uint64_t* h = self.hist if kind == "query" else self.lhist
        cdef uint32_t i
        return {i: h[i] for i in range(HIST_N) if h[i]}

    def per_second(self) -> list:
        """``[sent, answered, lost, late, lookups]`` for each second since t0."""
        cdef uint32_t i, last = 0
        for i in range(self.nsec):
            if self.ps[i * PS_N] or self.ps[i * PS_N + 1] or self.ps[i * PS_N + 2] or self.ps[i * PS_N + 3] or self.ps[i * PS_N + 4]:
                last = i + 1
        return [[self.ps[i * PS_N + k] for k in range(PS_N)] for i in range(last)]
