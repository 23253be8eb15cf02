# Included by _loop.pyx after _loop_forward.pxi: the C forwarder's TCP upstreams.
#
# A flight that goes over TCP (``force_tcp``, a TCP client, or a UDP answer with TC)
# is sent on a persistent connection to its upstream, pipelined (RFC 7766 6.2.1.1):
#
# * each upstream keeps up to FW_TCP_PER_UP connections per worker, opened
#   non-blocking as load asks for them (a new one once every open one has
#   FW_TCP_SPREAD queries in flight, so several upstream workers share the load);
#   at most FwState.max_tcp in all (limits.UPSTREAM_TCP_CONNS);
# * up to FW_TCP_PIPE queries in flight per connection; the ID's low byte is the
#   query's place on the connection and its high byte is random, so an answer
#   finds its flight in O(1) and is still checked against ID and question;
#   answers may come in any order;
# * queries are queued per connection and written once per loop turn
#   (fw_flush_dirty), so a burst of misses costs one send() per connection;
# * a connection closes when idle for ``expire``; takes no new query past
#   ``max_age``; is retired when a query on it times out with no answer on it since
#   it was sent; is closed by EOF, an error or a frame too short to be DNS: its
#   queries then go to a new connection once (if the broken one had answered
#   before: a stale idle connection) or on to the next upstream;
# * the flight's deadline (read_timeout + UPSTREAM_TCP_SLACK) covers connecting,
#   queueing and frames that are not its answer.


cdef void fw_conn_close(FwState* f, int ci) noexcept nogil:
    cdef FwConn* c = &f.conns[ci]
    if c.fd < 0:
        return
    close(c.fd)                 # also leaves the epoll set
    c.fd = -1
    c.gen += 1
    free(c.inb)
    free(c.outb)
    c.inb = NULL
    c.outb = NULL
    if c.dirty:
        c.dirty = False
        f.ndirty -= 1
    f.ntcp -= 1
    f.nsockets -= 1
    f.stat[11] += 1


cdef bint fw_conn_valid(FwState* f, FwUp* u, int k) noexcept nogil:
    cdef int ci = u.conn[k]
    return ci >= 0 and f.conns[ci].fd >= 0 and f.conns[ci].gen == u.conn_gen[k]


cdef bint fw_idle_surplus(FwState* f, FwFlight* fl) noexcept nogil:
    """More idle connections to the flight's upstream than ``max_idle_conns`` keeps."""
    cdef FwGroup* g = &fl.fb.groups[fl.group]
    cdef FwUp* u
    cdef int k, idle = 0
    if g.max_idle <= 0 or fl.cur < 0:
        return False
    u = &g.ups[fl.cur]
    for k in range(FW_TCP_PER_UP):
        if fw_conn_valid(f, u, k) and f.conns[u.conn[k]].inflight == 0:
            idle += 1
    return idle > g.max_idle


cdef int fw_conn_open(Engine e, FwGroup* g, FwUp* u, uint64_t now, int* err) noexcept nogil:
    """A new connection to ``u`` (connecting), or -1 with err[0]: errno, or 0 when a
    limit (UPSTREAM_TCP_CONNS, UPSTREAM_PORTS) is reached."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwConn* c
    cdef int ci, fd, one = 1, k
    cdef epoll_event ev
    err[0] = 0
    if f.ntcp >= f.max_tcp or f.nsockets >= f.max_sockets:
        return -1
    for ci in range(f.max_tcp):
        if f.conns[ci].fd < 0:
            break
    else:
        return -1
    fd = socket(u.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        err[0] = errno
        return -1
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
    if g.srclen and bind(fd, <sockaddr*>&g.src, g.srclen) != 0:
        err[0] = errno
        close(fd)
        return -1
    if connect(fd, <sockaddr*>&u.addr, u.alen) != 0 and errno != EINPROGRESS:
        err[0] = errno
        close(fd)
        return -1
    c = &f.conns[ci]
    c.inb = <uint8_t*>malloc(FW_TCP_IN)
    c.outb = <uint8_t*>malloc(FW_TCP_OUT)
    ev.events = EPOLLIN | EPOLLOUT
    ev.data.u64 = FWD_TAG | FWC_TAG | (<uint64_t>c.gen << 24) | <uint64_t>ci
    if c.inb == NULL or c.outb == NULL or epoll_ctl(e.epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
        err[0] = errno if errno else 12
        free(c.inb)
        free(c.outb)
        c.inb = NULL
        c.outb = NULL
        close(fd)
        return -1
    c.fd = fd
    c.connected = False
    c.writing = True
    c.dirty = False
    c.retire = False
    c.inflight = 0
    c.answered = 0
    c.opened = now
    c.last = now
    c.last_read = 0
    c.last_answer = 0
    c.expire_ns = g.expire_ns
    c.max_age_ns = g.max_age_ns
    c.inlen = c.outlen = c.outoff = 0
    for k in range(FW_TCP_PIPE):
        c.slots[k] = -1
        c.freep[k] = <uint8_t>(FW_TCP_PIPE - 1 - k)
    c.nfreep = FW_TCP_PIPE
    f.ntcp += 1
    f.nsockets += 1
    f.stat[10] += 1
    return ci


cdef int fw_tcp_pick(Engine e, FwGroup* g, FwUp* u, uint64_t now, int* err) noexcept nogil:
    """The connection to ``u`` a new query goes on: the least busy open one, or a new
    one once all are busy (-1: none, err[0] as fw_conn_open's)."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwConn* c
    cdef int k, ci, best = -1, empty = -1
    err[0] = 0
    for k in range(FW_TCP_PER_UP):
        if not fw_conn_valid(f, u, k):
            u.conn[k] = -1
            if empty < 0:
                empty = k
            continue
        c = &f.conns[u.conn[k]]
        if not c.retire and c.max_age_ns and now - c.opened >= c.max_age_ns:
            c.retire = True                 # max_age: what is in flight ends there
            if c.inflight == 0:
                fw_conn_close(f, u.conn[k])
        if c.retire:
            u.conn[k] = -1                  # its place goes to a new connection
            if empty < 0:
                empty = k
            continue
        if c.inflight >= FW_TCP_PIPE:
            continue
        if c.outoff and c.outlen + FW_TCP_QMAX > FW_TCP_OUT:
            memmove(c.outb, c.outb + c.outoff, c.outlen - c.outoff)
            c.outlen -= c.outoff
            c.outoff = 0
        if c.outlen + FW_TCP_QMAX > FW_TCP_OUT:
            continue                        # an upstream that does not read: no room
        if best < 0 or c.inflight < f.conns[best].inflight:
            best = u.conn[k]
    if best >= 0 and (f.conns[best].inflight < FW_TCP_SPREAD or empty < 0):
        return best
    if empty >= 0:
        ci = fw_conn_open(e, g, u, now, err)
        if ci >= 0:
            u.conn[empty] = ci
            u.conn_gen[empty] = f.conns[ci].gen
            return ci
    return best


cdef bint fw_tcp_send(Engine e, int slot, FwUp* u, uint64_t now) noexcept nogil:
    """Queue flight ``slot``'s query on a connection to ``u`` (False: fw_fail said why)."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwFlight* fl = &f.flights[slot]
    cdef FwGroup* g = &fl.fb.groups[fl.group]
    cdef FwConn* c
    cdef int ci, pipe, err
    cdef size_t n
    ci = fw_tcp_pick(e, g, u, now, &err)
    if ci < 0:
        fw_fail(e, fl, FE_DIAL if err else FE_PORTS, err, now)
        return False
    c = &f.conns[ci]
    c.nfreep -= 1
    pipe = c.freep[c.nfreep]
    fl.qid = (fw_random16(f) & 0xFF00) | <uint16_t>pipe
    memcpy(fl.sent_name, fl.raw, fl.klen)        # over TCP no 0x20: the first asker's spelling
    n = fw_query(fl, c.outb + c.outlen + 2)
    st16(c.outb + c.outlen, <uint16_t>n)
    c.outlen += <uint32_t>n + 2
    c.slots[pipe] = slot
    c.inflight += 1
    c.last = now
    fl.conn = ci
    fl.pipe = pipe
    if not c.dirty:
        c.dirty = True
        f.ndirty += 1
    return True


cdef void fw_conn_fail(Engine e, int ci, int kind, int errnum, uint64_t now) except *:
    """Connection ``ci`` broke: close it; each of its queries goes once to a new
    connection to the same upstream if this one had answered before (a stale idle
    connection), else on to the next upstream."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwConn* c = &f.conns[ci]
    cdef FwFlight* fl
    cdef int k, nslots = 0, slot
    cdef int slots[FW_TCP_PIPE]
    cdef bint reused = c.answered > 0
    c.retire = True
    for k in range(FW_TCP_PIPE):
        slot = c.slots[k]
        if slot < 0:
            continue
        fl = &f.flights[slot]
        if reused and not fl.fresh_retry:
            fl.fresh_retry = True
            fw_close_attempt(f, fl)
            fl.pos -= 1                     # the same upstream again
        else:
            fw_fail(e, fl, kind, errnum, now)
        fw_heap_remove(f, slot)
        slots[nslots] = slot
        nslots += 1
    fw_conn_close(f, ci)                    # (closed already if it had queries)
    for k in range(nslots):
        slot = slots[k]
        if f.flights[slot].used and not fw_attempt(e, slot, now):
            fw_give_up(e, slot)


cdef void fw_conn_flush(Engine e, int ci, uint64_t now) except *:
    """Write what is queued on connection ``ci`` (EPOLLOUT armed while some is left)."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwConn* c = &f.conns[ci]
    cdef ssize_t r
    cdef epoll_event ev
    if c.dirty:
        c.dirty = False
        f.ndirty -= 1
    if c.fd < 0 or not c.connected:
        return                              # connecting: EPOLLOUT is armed
    while c.outoff < c.outlen:
        r = send(c.fd, c.outb + c.outoff, c.outlen - c.outoff, MSG_DONTWAIT | MSG_NOSIGNAL)
        if r < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                break
            fw_conn_fail(e, ci, FE_WRITE, errno, now)
            return
        c.outoff += <uint32_t>r
    if c.outoff == c.outlen:
        c.outoff = c.outlen = 0
    if (c.outlen > 0) != c.writing:
        c.writing = c.outlen > 0
        ev.events = EPOLLIN | (EPOLLOUT if c.writing else 0)
        ev.data.u64 = FWD_TAG | FWC_TAG | (<uint64_t>c.gen << 24) | <uint64_t>ci
        epoll_ctl(e.epfd, EPOLL_CTL_MOD, c.fd, &ev)


cdef void fw_flush_dirty(Engine e) except *:
    """Write the queries queued on every connection since the last turn, and the
    client answers queued for sendmmsg."""
    cdef FwState* f = <FwState*>e.fw
    cdef int ci
    cdef uint64_t now
    if f == NULL:
        return
    if f.nq:
        fw_flush_replies(e)
    if f.ndirty <= 0:
        return
    now = st_now_ns()
    for ci in range(f.max_tcp):
        if f.conns[ci].dirty:
            fw_conn_flush(e, ci, now)
            if f.ndirty <= 0:
                break


cdef void fw_conn_read(Engine e, int ci, uint64_t now) except *:
    """Read what connection ``ci`` holds; answer every whole frame that is ours."""
    cdef FwState* f = <FwState*>e.fw
    cdef FwConn* c = &f.conns[ci]
    cdef uint32_t gen = c.gen
    cdef ssize_t r
    cdef uint32_t pos, flen
    cdef int reads, slot
    cdef FwFlight* fl
    cdef uint16_t qid
    for reads in range(8):          # a flood on one connection cannot hold the loop
        r = recv(c.fd, c.inb + c.inlen, FW_TCP_IN - c.inlen, MSG_DONTWAIT)
        if r < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                return
            fw_conn_fail(e, ci, FE_READ, errno, now)
            return
        if r == 0:
            fw_conn_fail(e, ci, FE_EOF, 0, now)
            return
        c.inlen += <uint32_t>r
        c.last_read = now
        c.last = now
        pos = 0
        while c.inlen - pos >= 2:
            flen = ld16(c.inb + pos)
            if flen < 12:
                fw_conn_fail(e, ci, FE_FRAME, 0, now)
                return
            if c.inlen - pos < 2 + flen:
                break
            qid = ld16(c.inb + pos + 2)
            slot = c.slots[qid & 0xFF]
            pos += 2 + flen
            if slot < 0:
                f.stat[2] += 1              # no query of ours there (timed out, or spoofed)
                continue
            fl = &f.flights[slot]
            if fl.qid != qid or not fw_matches(fl, c.inb + pos - flen, flen):
                f.stat[2] += 1              # not the answer: ignored, never cached
                continue
            c.answered += 1
            c.last_answer = now
            memcpy(f.abuf, c.inb + pos - flen, flen)
            fw_answered(e, slot, flen, now)
            if c.fd < 0 or c.gen != gen:
                return                      # it was retiring and this was its last one
        if pos:
            memmove(c.inb, c.inb + pos, c.inlen - pos)
            c.inlen -= pos


cdef void fw_conn_event(Engine e, uint64_t tag, uint32_t events) except *:
    """epoll says connection ``tag`` is ready: connected, writable, readable or broken."""
    cdef FwState* f = <FwState*>e.fw
    cdef int ci = <int>(tag & 0xFFFFFF)
    cdef uint32_t gen = <uint32_t>((tag >> 24) & 0xFFFFFFFF)
    cdef FwConn* c
    cdef int err = 0
    cdef socklen_t elen = sizeof(err)
    cdef uint64_t now = st_now_ns()
    if ci >= f.max_tcp:
        return
    c = &f.conns[ci]
    if c.fd < 0 or c.gen != gen:
        return                              # closed earlier in this batch of events
    if not c.connected and events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
        if getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0:
            err = errno
        if err:
            fw_conn_fail(e, ci, FE_DIAL, err, now)
            return
        c.connected = True
    if events & EPOLLOUT:
        fw_conn_flush(e, ci, now)
        if c.fd < 0 or c.gen != gen:
            return
    if events & (EPOLLIN | EPOLLERR | EPOLLHUP):
        fw_conn_read(e, ci, now)


cdef void fw_conn_sweep(FwState* f, uint64_t now) noexcept nogil:
    """Close idle connections: past ``expire``, past ``max_age``, or retired."""
    cdef int ci
    cdef FwConn* c
    for ci in range(f.max_tcp):
        c = &f.conns[ci]
        if c.fd >= 0 and c.inflight == 0 and (c.retire or now - c.last >= c.expire_ns
                                               or (c.max_age_ns and now - c.opened >= c.max_age_ns)):
            fw_conn_close(f, ci)
