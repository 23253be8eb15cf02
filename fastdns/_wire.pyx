# cython: language_level=3
"""C-level DNS wire codec (see _wire.pxd for the contract).

The ``cdef`` functions are the hot path: they return status codes and never
touch Python objects.  The ``def``/``cdef class`` wrappers at the bottom are
the library surface that ``fastdns.wire`` re-exports; they raise
:class:`fastdns.errors.FormatError` / :class:`~fastdns.errors.EncodeError`.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset, memcmp
from consts cimport (MAX_NAME, MAX_LABEL, MAX_PTR_HOPS, HEADER_LEN, MIN_UDP,
                     EDNS_UDP, MAX_MSG, MAX_COMP, MAX_RRS)

from net cimport timespec, clock_gettime, CLOCK_MONOTONIC

from fastdns.errors import FormatError, EncodeError


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)
    int AF_INET
    int AF_INET6


# --------------------------------------------------------------------------
# names

cdef inline uint8_t lc(uint8_t c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef void lower_name(uint8_t* name, size_t n) noexcept nogil:
    cdef size_t i = 0
    while i < n:
        name[i] = lc(name[i])
        i += 1


cdef int read_name(const uint8_t* msg, size_t msglen, size_t off, uint8_t* out,
                   uint16_t* out_len, size_t* next_off, bint lower) noexcept nogil:
    """Read the (possibly compressed) name at ``off`` into ``out`` uncompressed.

    Pointers must go strictly backwards, each before the previous target
    (dnspython's rule), which also bounds loops; hops are capped as well.
    ``next_off`` is set to the offset after the name in the original place.
    """
    cdef size_t pos = off
    cdef size_t lowest = off     # every pointer must point before this
    cdef size_t n = 0
    cdef int hops = 0
    cdef bint jumped = False
    cdef uint8_t b
    cdef size_t ptr, i
    while True:
        if pos >= msglen:
            return W_FORMERR
        b = msg[pos]
        if b == 0:
            if n + 1 > MAX_NAME:
                return W_FORMERR
            out[n] = 0
            n += 1
            if not jumped:
                next_off[0] = pos + 1
            out_len[0] = <uint16_t>n
            return W_OK
        if b & 0xC0 == 0xC0:
            if pos + 1 >= msglen:
                return W_FORMERR
            ptr = ((b & 0x3F) << 8) | msg[pos + 1]
            if ptr >= lowest:
                return W_FORMERR
            hops += 1
            if hops > MAX_PTR_HOPS:
                return W_FORMERR
            if not jumped:
                next_off[0] = pos + 2
                jumped = True
            lowest = ptr
            pos = ptr
            continue
        if b & 0xC0:
            return W_FORMERR       # 0x40 / 0x80 label types: not supported
        if pos + 1 + b > msglen:
            return W_FORMERR
        if n + 1 + b + 1 > MAX_NAME:   # label + at least the root byte
            return W_FORMERR
        out[n] = b
        if lower:
            for i in range(b):
                out[n + 1 + i] = lc(msg[pos + 1 + i])
        else:
            memcpy(out + n + 1, msg + pos + 1, b)
        n += 1 + b
        pos += 1 + b


cdef int check_name(const uint8_t* name, size_t n) noexcept nogil:
    """W_OK if ``name[:n]`` is one uncompressed wire name ending exactly at n."""
    cdef size_t pos = 0
    if n == 0 or n > MAX_NAME:
        return W_BADNAME
    while pos < n:
        if name[pos] == 0:
            return W_OK if pos + 1 == n else W_BADNAME
        if name[pos] > MAX_LABEL:
            return W_BADNAME
        pos += 1 + name[pos]
    return W_BADNAME


cdef int name_eq_ci(const uint8_t* a, const uint8_t* b, size_t n) noexcept nogil:
    cdef size_t i
    for i in range(n):
        if lc(a[i]) != lc(b[i]):
            return 0
    return 1


cdef int skip_rr(const uint8_t* msg, size_t msglen, size_t* pos) noexcept nogil:
    cdef uint8_t tmp[256]
    cdef uint16_t tl
    cdef size_t nxt
    cdef int rc = read_name(msg, msglen, pos[0], tmp, &tl, &nxt, False)
    if rc != W_OK:
        return rc
    if nxt + 10 > msglen:
        return W_FORMERR
    nxt += 10 + ld16(msg + nxt + 8)
    if nxt > msglen:
        return W_FORMERR
    pos[0] = nxt
    return W_OK


# --------------------------------------------------------------------------
# queries

cdef int parse_query(const uint8_t* msg, size_t msglen, QueryInfo* q) noexcept nogil:
    """Parse a query's header, question and EDNS OPT into ``q``.

    Returns W_OK, or W_SHORT / W_NOTQUERY (drop), W_FORMERR / W_NOTIMP /
    W_BADVERS (answer with that rcode; ``q.id`` and ``q.flags`` are valid, and
    the question too when ``q.question_end`` is non-zero).
    """
    cdef size_t pos, nxt, rdend, optpos
    cdef uint32_t i
    cdef uint16_t olen
    cdef uint32_t ttl
    cdef int rc
    cdef bint seen_opt = False
    q.question_end = 0
    q.edns = False
    q.do_bit = False
    q.udp_size = MIN_UDP
    q.edns_version = 0
    q.nsid = False
    q.name_len = 0
    if msglen < HEADER_LEN:
        return W_SHORT
    q.id = ld16(msg)
    q.flags = ld16(msg + 2)
    q.qdcount = ld16(msg + 4)
    q.ancount = ld16(msg + 6)
    q.nscount = ld16(msg + 8)
    q.arcount = ld16(msg + 10)
    q.opcode = (q.flags >> 11) & 0xF
    if q.flags & F_QR:
        return W_NOTQUERY
    if q.qdcount != 1:
        return W_NOTIMP if q.opcode != 0 else W_FORMERR
    rc = read_name(msg, msglen, HEADER_LEN, q.raw, &q.name_len, &nxt, False)
    if rc != W_OK:
        return rc
    if nxt + 4 > msglen:
        return W_FORMERR
    memcpy(q.key, q.raw, q.name_len)
    lower_name(q.key, q.name_len)
    q.qtype = ld16(msg + nxt)
    q.qclass = ld16(msg + nxt + 2)
    pos = nxt + 4
    q.question_end = <uint16_t>pos
    if q.opcode != 0:
        return W_NOTIMP
    i = 0
    while i < <uint32_t>q.ancount + q.nscount:
        rc = skip_rr(msg, msglen, &pos)
        if rc != W_OK:
            return rc
        i += 1
    i = 0
    while i < q.arcount:
        optpos = pos
        rc = skip_rr(msg, msglen, &pos)
        if rc != W_OK:
            return rc
        # skip_rr checked the fixed part; find the type right after the owner name
        nxt = optpos
        while msg[nxt] != 0 and msg[nxt] & 0xC0 != 0xC0:
            nxt += 1 + msg[nxt]
        nxt += 1 if msg[nxt] == 0 else 2
        if ld16(msg + nxt) == T_OPT:
            if seen_opt or nxt != optpos + 1:
                return W_FORMERR          # RFC 6891 6.1.1: one OPT, owner is the root
            seen_opt = True
            q.edns = True
            q.udp_size = ld16(msg + nxt + 2)
            if q.udp_size < MIN_UDP:
                q.udp_size = MIN_UDP
            ttl = ld32(msg + nxt + 4)
            q.edns_version = (ttl >> 16) & 0xFF
            q.do_bit = (ttl & 0x8000) != 0
            rdend = pos
            optpos = nxt + 10
            while optpos < rdend:       # options: skipped, but within bounds
                if optpos + 4 > rdend:
                    return W_FORMERR
                olen = ld16(msg + optpos + 2)
                if ld16(msg + optpos) == 3:
                    q.nsid = True
                optpos += 4 + olen
                if optpos > rdend:
                    return W_FORMERR
        i += 1
    if pos != msglen:
        return W_FORMERR                # trailing junk (as dnspython)
    if seen_opt and q.edns_version != 0:
        return W_BADVERS
    return W_OK


# --------------------------------------------------------------------------
# writer

cdef void w_init(Writer* w, uint8_t* buf, size_t cap, size_t limit) noexcept nogil:
    w.buf = buf
    w.cap = cap
    w.limit = limit if limit < cap else cap
    w.reserve = 0
    w.pos = 0
    w.counts[0] = w.counts[1] = w.counts[2] = w.counts[3] = 0
    w.ncomp = 0
    w.truncated = False
    w.stopped = False
    w.overflow = False
    w.nocomp = False
    w.id = 0
    w.flags = 0
    w.rcode = 0
    w.nrr = 0


cdef inline bint w_room(Writer* w, size_t n) noexcept nogil:
    if w.pos + n > w.cap:
        w.overflow = True
        return False
    return True


cdef inline void w_u16(Writer* w, uint16_t v) noexcept nogil:
    if w_room(w, 2):
        st16(w.buf + w.pos, v)
        w.pos += 2


cdef inline void w_u32(Writer* w, uint32_t v) noexcept nogil:
    if w_room(w, 4):
        st32(w.buf + w.pos, v)
        w.pos += 4


cdef inline void w_bytes(Writer* w, const uint8_t* p, size_t n) noexcept nogil:
    if w_room(w, n):
        memcpy(w.buf + w.pos, p, n)
        w.pos += n


cdef void w_header(Writer* w, uint16_t id, uint16_t flags, uint16_t rcode) noexcept nogil:
    w.id = id
    w.flags = flags
    w.rcode = rcode
    if w_room(w, HEADER_LEN):
        memset(w.buf + w.pos, 0, HEADER_LEN)
        w.pos += HEADER_LEN


cdef bint suffix_at(const uint8_t* buf, size_t off, const uint8_t* name) noexcept nogil:
    """Does the name written at buf[off] (pointers allowed) equal ``name``?"""
    cdef int hops = 0
    cdef uint8_t b
    cdef size_t i = 0
    while True:
        b = buf[off]
        if b & 0xC0 == 0xC0:
            hops += 1
            if hops > MAX_PTR_HOPS:
                return False
            off = ((b & 0x3F) << 8) | buf[off + 1]
            continue
        if b != name[i]:
            return False
        if b == 0:
            return True
        if not name_eq_ci(buf + off + 1, name + i + 1, b):
            return False
        off += 1 + b
        i += 1 + b


cdef void w_name(Writer* w, const uint8_t* name, bint compress) noexcept nogil:
    cdef size_t i = 0
    cdef int k
    cdef int complete = w.ncomp    # only names finished before this one may be pointed at
    while name[i] != 0:
        if compress and not w.nocomp:
            for k in range(complete):
                if suffix_at(w.buf, w.comp[k], name + i):
                    w_u16(w, 0xC000 | w.comp[k])
                    return
        if w.pos < 0x3FFF and w.ncomp < MAX_COMP:
            w.comp[w.ncomp] = <uint16_t>w.pos
            w.ncomp += 1
        w_bytes(w, name + i, 1 + name[i])
        i += 1 + name[i]
    w_bytes(w, name + i, 1)


cdef int w_question(Writer* w, const uint8_t* name, size_t nlen, uint16_t qtype,
                    uint16_t qclass) noexcept nogil:
    if check_name(name, nlen) != W_OK:
        return W_BADNAME
    w_name(w, name, False)
    w_u16(w, qtype)
    w_u16(w, qclass)
    if w.overflow:
        return W_NOSPACE
    w.counts[0] += 1
    return W_OK


cdef inline bint rr_begin(Writer* w, int sec, const uint8_t* name, uint16_t rtype,
                          uint16_t rclass, uint32_t ttl, size_t* start, int* ncomp,
                          size_t* rdlen_at) noexcept nogil:
    if w.stopped or sec < SEC_ANSWER or sec > SEC_ADDITIONAL:
        return False
    start[0] = w.pos
    ncomp[0] = w.ncomp
    w_name(w, name, True)
    w_u16(w, rtype)
    w_u16(w, rclass)
    w_u32(w, ttl)
    rdlen_at[0] = w.pos
    w_u16(w, 0)
    return True


cdef inline int rr_end(Writer* w, int sec, size_t start, int ncomp, size_t rdlen_at) noexcept nogil:
    """Close an RR; roll it back whole if it does not fit (never half an RR)."""
    if w.overflow or w.pos + w.reserve > w.limit or w.nrr >= MAX_RRS:
        w.pos = start
        w.ncomp = ncomp
        w.overflow = False
        w.stopped = True
        if sec != SEC_ADDITIONAL:
            w.truncated = True
        return W_NOSPACE
    st16(w.buf + rdlen_at, <uint16_t>(w.pos - rdlen_at - 2))
    w.counts[sec] += 1
    w.rr_end[w.nrr] = <uint16_t>w.pos
    w.rr_sec[w.nrr] = <uint8_t>sec
    w.nrr += 1
    return W_OK


cdef int w_rr_raw(Writer* w, int sec, const uint8_t* name, size_t nlen, uint16_t rtype,
                  uint16_t rclass, uint32_t ttl, const uint8_t* rdata, size_t rdlen) noexcept nogil:
    cdef size_t start, rdlen_at
    cdef int ncomp
    if check_name(name, nlen) != W_OK or rdlen > 0xFFFF:
        return W_BADNAME
    if not rr_begin(w, sec, name, rtype, rclass, ttl, &start, &ncomp, &rdlen_at):
        return W_NOSPACE
    w_bytes(w, rdata, rdlen)
    return rr_end(w, sec, start, ncomp, rdlen_at)


cdef int w_rr_name(Writer* w, int sec, const uint8_t* name, size_t nlen, uint16_t rtype,
                   uint32_t ttl, const uint8_t* target, size_t tlen) noexcept nogil:
    cdef size_t start, rdlen_at
    cdef int ncomp
    if check_name(name, nlen) != W_OK or check_name(target, tlen) != W_OK:
        return W_BADNAME
    if not rr_begin(w, sec, name, rtype, 1, ttl, &start, &ncomp, &rdlen_at):
        return W_NOSPACE
    w_name(w, target, True)       # CNAME, NS, PTR: compressible (RFC 3597 4)
    return rr_end(w, sec, start, ncomp, rdlen_at)


cdef int w_rr_srv(Writer* w, int sec, const uint8_t* name, size_t nlen, uint32_t ttl,
                  uint16_t prio, uint16_t weight, uint16_t port,
                  const uint8_t* target, size_t tlen) noexcept nogil:
    cdef size_t start, rdlen_at
    cdef int ncomp
    if check_name(name, nlen) != W_OK or check_name(target, tlen) != W_OK:
        return W_BADNAME
    if not rr_begin(w, sec, name, T_SRV, 1, ttl, &start, &ncomp, &rdlen_at):
        return W_NOSPACE
    w_u16(w, prio)
    w_u16(w, weight)
    w_u16(w, port)
    w_name(w, target, False)      # RFC 2782: the target is not compressed
    return rr_end(w, sec, start, ncomp, rdlen_at)


cdef int w_rr_soa(Writer* w, int sec, const uint8_t* name, size_t nlen, uint32_t ttl,
                  const uint8_t* mname, size_t mlen, const uint8_t* rname, size_t rlen,
                  uint32_t serial, uint32_t refresh, uint32_t retry, uint32_t expire,
                  uint32_t minimum) noexcept nogil:
    cdef size_t start, rdlen_at
    cdef int ncomp
    if (check_name(name, nlen) != W_OK or check_name(mname, mlen) != W_OK
            or check_name(rname, rlen) != W_OK):
        return W_BADNAME
    if not rr_begin(w, sec, name, T_SOA, 1, ttl, &start, &ncomp, &rdlen_at):
        return W_NOSPACE
    w_name(w, mname, True)
    w_name(w, rname, True)
    w_u32(w, serial)
    w_u32(w, refresh)
    w_u32(w, retry)
    w_u32(w, expire)
    w_u32(w, minimum)
    return rr_end(w, sec, start, ncomp, rdlen_at)


cdef int w_opt(Writer* w, uint16_t udp_size, bint do_bit) noexcept nogil:
    """Append the OPT RR; call after w.reserve = 11 was kept free for it."""
    w.reserve = 0
    if not w_room(w, 11):
        return W_NOSPACE
    w.buf[w.pos] = 0
    st16(w.buf + w.pos + 1, T_OPT)
    st16(w.buf + w.pos + 3, udp_size)
    w.buf[w.pos + 5] = <uint8_t>((w.rcode >> 4) & 0xFF)
    w.buf[w.pos + 6] = 0
    st16(w.buf + w.pos + 7, 0x8000 if do_bit else 0)
    st16(w.buf + w.pos + 9, 0)
    w.pos += 11
    w.counts[3] += 1
    return W_OK


cdef size_t w_finish(Writer* w) noexcept nogil:
    """Patch id, flags (+TC, rcode's low bits) and counts; return the length."""
    cdef uint16_t flags = (w.flags & 0xFDF0) | (w.rcode & 0xF)
    if w.truncated:
        flags |= F_TC
    if w.pos < HEADER_LEN:
        return 0
    st16(w.buf, w.id)
    st16(w.buf + 2, flags)
    st16(w.buf + 4, w.counts[0])
    st16(w.buf + 6, w.counts[1])
    st16(w.buf + 8, w.counts[2])
    st16(w.buf + 10, w.counts[3])
    return w.pos


# --------------------------------------------------------------------------
# stored responses

cdef int body_from_wire(const uint8_t* msg, size_t msglen, uint8_t* out, size_t cap,
                        size_t* out_len) noexcept nogil:
    """Turn a complete response into a body (see _wire.pxd); W_FORMERR if unusable.

    The question must be one uncompressed name at offset 12; an OPT record
    must be the last RR (it is dropped: whoever emits the body adds its own).
    """
    cdef uint8_t tmp[256]
    cdef uint16_t nlen, rtype
    cdef size_t nxt, pos, start, blob_end, rr_start
    cdef uint32_t i, total, ttl
    cdef BodyHdr* h = <BodyHdr*>out
    cdef RRMeta* meta
    cdef size_t meta_at = sizeof(BodyHdr)
    if msglen < HEADER_LEN or msglen > MAX_MSG or ld16(msg + 4) != 1 or cap < sizeof(BodyHdr):
        return W_FORMERR            # > MAX_MSG: offsets would wrap in the uint16 fields
    if read_name(msg, msglen, HEADER_LEN, tmp, &nlen, &nxt, False) != W_OK:
        return W_FORMERR
    if nxt != HEADER_LEN + nlen or nxt + 4 > msglen:
        return W_FORMERR
    start = nxt + 4
    h.flags = ld16(msg + 2) & (F_AA | F_RA | F_AD)
    h.rcode = ld16(msg + 2) & 0xF
    h.an = ld16(msg + 6)
    h.ns = ld16(msg + 8)
    h.ar = ld16(msg + 10)
    h.qname_len = nlen
    h.min_ttl = 0xFFFFFFFF
    total = <uint32_t>h.an + h.ns + h.ar
    if total > MAX_RRS:
        return W_FORMERR
    meta = <RRMeta*>(out + meta_at)
    pos = start
    blob_end = start
    h.nrr = 0
    for i in range(total):
        rr_start = pos
        if skip_rr(msg, msglen, &pos) != W_OK:
            return W_FORMERR
        nxt = rr_start
        while msg[nxt] != 0 and msg[nxt] & 0xC0 != 0xC0:
            nxt += 1 + msg[nxt]
        nxt += 1 if msg[nxt] == 0 else 2
        rtype = ld16(msg + nxt)
        if rtype == T_OPT:
            if i != total - 1 or i < <uint32_t>h.an + h.ns:
                return W_FORMERR
            ttl = ld32(msg + nxt + 4)
            h.rcode |= ((ttl >> 24) & 0xFF) << 4
            h.ar -= 1
            break
        if meta_at + (h.nrr + 1) * sizeof(RRMeta) > cap:
            return W_FORMERR
        ttl = ld32(msg + nxt + 4)
        if ttl < h.min_ttl:
            h.min_ttl = ttl
        meta[h.nrr].end = <uint16_t>(pos - start)
        meta[h.nrr].ttl_off = <uint16_t>(nxt + 4 - start)
        h.nrr += 1
        blob_end = pos
    if pos != msglen:
        return W_FORMERR
    h.blob_len = <uint16_t>(blob_end - start)
    nxt = meta_at + h.nrr * sizeof(RRMeta)
    if nxt + h.blob_len > cap:
        return W_FORMERR
    memcpy(out + nxt, msg + start, h.blob_len)
    out_len[0] = nxt + h.blob_len
    return W_OK


cdef inline size_t put_header_question(const QueryInfo* q, uint16_t flags, uint8_t* out,
                                       size_t cap) noexcept nogil:
    cdef size_t n = HEADER_LEN + q.name_len + 4
    if n > cap or q.question_end == 0:
        return 0
    st16(out, q.id)
    st16(out + 2, flags)
    st16(out + 4, 1)
    memset(out + 6, 0, 6)
    memcpy(out + HEADER_LEN, q.raw, q.name_len)
    st16(out + HEADER_LEN + q.name_len, q.qtype)
    st16(out + HEADER_LEN + q.name_len + 2, q.qclass)
    return n


cdef inline size_t put_opt(const QueryInfo* q, uint16_t rcode, uint8_t* out) noexcept nogil:
    out[0] = 0
    st16(out + 1, T_OPT)
    st16(out + 3, EDNS_UDP)
    out[5] = <uint8_t>((rcode >> 4) & 0xFF)
    out[6] = 0
    st16(out + 7, 0x8000 if q.do_bit else 0)
    st16(out + 9, 0)
    return 11


cdef size_t emit_body(const QueryInfo* q, const uint8_t* body, size_t body_len,
                      uint32_t age, size_t limit, uint8_t* out, size_t cap) noexcept nogil:
    """Write the response to ``q`` from a stored body; 0 if it cannot be done.

    ID, RD/CD and the question (0x20 case) come from the query; TTLs are
    lowered by ``age`` on the copy; whole RRs are dropped from the end to fit
    ``limit`` (TC set unless only additional RRs were dropped); an OPT is
    added when the query had one.
    """
    cdef const BodyHdr* h = <const BodyHdr*>body
    cdef const RRMeta* meta = <const RRMeta*>(body + sizeof(BodyHdr))
    cdef const uint8_t* blob
    cdef size_t qend, room, blen, k, nk
    cdef uint16_t flags, an, ns, ar
    cdef uint32_t ttl
    cdef uint8_t* p
    if body_len < sizeof(BodyHdr) or (h.qname_len != q.name_len and h.qname_len != ANY_QNAME):
        return 0
    if sizeof(BodyHdr) + h.nrr * sizeof(RRMeta) + h.blob_len > body_len:
        return 0
    blob = body + sizeof(BodyHdr) + h.nrr * sizeof(RRMeta)
    flags = F_QR | (q.flags & (0x7800 | F_RD | F_CD)) | h.flags | (h.rcode & 0xF)
    if limit > cap:
        limit = cap
    qend = put_header_question(q, flags, out, limit)
    if qend == 0 or qend + (11 if q.edns else 0) > limit:
        return 0                    # not even the question (+ OPT) fits: no wrap below
    room = limit - qend - (11 if q.edns else 0)
    nk = h.nrr
    blen = h.blob_len
    if blen > room:
        nk = 0
        while nk < h.nrr and meta[nk].end <= room:
            nk += 1
        blen = meta[nk - 1].end if nk > 0 else 0
        if nk < <size_t>h.an + h.ns:
            st16(out + 2, flags | F_TC)
    an = <uint16_t>(nk if nk < h.an else h.an)
    ns = <uint16_t>(nk - an if nk - an < h.ns else h.ns)
    ar = <uint16_t>(nk - an - ns)
    memcpy(out + qend, blob, blen)
    if age:
        for k in range(nk):
            if <size_t>meta[k].ttl_off + 4 > blen:
                return 0            # corrupt body (cache values are not trusted)
            p = out + qend + meta[k].ttl_off
            ttl = ld32(p)
            st32(p, ttl - age if ttl > age else 0)
    qend += blen
    if q.edns:
        qend += put_opt(q, h.rcode, out + qend)
        ar += 1
    st16(out + 6, an)
    st16(out + 8, ns)
    st16(out + 10, ar)
    return qend


cdef size_t emit_rcode(const QueryInfo* q, uint16_t rcode, uint16_t flags, uint8_t* out,
                       size_t cap) noexcept nogil:
    """An empty response with ``rcode`` (FORMERR, REFUSED, SERVFAIL, BADVERS...).

    The question is echoed when it was parsed; OPT added when the query had one
    (BADVERS needs it for the high rcode bits).
    """
    cdef size_t n
    flags = F_QR | (q.flags & (0x7800 | F_RD | F_CD)) | flags | (rcode & 0xF)
    if q.question_end != 0:
        n = put_header_question(q, flags, out, cap)
        if n == 0:
            return 0
    else:
        if cap < HEADER_LEN:
            return 0
        st16(out, q.id)
        st16(out + 2, flags)
        memset(out + 4, 0, 8)
        n = HEADER_LEN
    if q.edns and n + 11 <= cap:
        n += put_opt(q, rcode, out + n)
        st16(out + 10, 1)
    return n


# --------------------------------------------------------------------------
# Python surface (off the hot path)

cdef bytes _ESCAPED = b'"().;\\@$'


def name_to_text(bytes wire) -> str:
    """Wire name → absolute text name with dnspython's escapes (``\\.``, ``\\DDD``)."""
    cdef const uint8_t* p = wire
    cdef size_t n = len(wire), pos = 0, i
    cdef uint8_t b, c
    if check_name(p, n) != W_OK:
        raise FormatError("not an uncompressed wire name")
    if n == 1:
        return "."
    parts = []
    while p[pos] != 0:
        b = p[pos]
        chars = []
        for i in range(b):
            c = p[pos + 1 + i]
            if c in _ESCAPED:
                chars.append("\\" + chr(c))
            elif 0x20 < c < 0x7F:
                chars.append(chr(c))
            else:
                chars.append("\\%03d" % c)
        parts.append("".join(chars))
        pos += 1 + b
    return ".".join(parts) + "."


def pack_names(names) -> bytes:
    """Uncompressed wire names as one ``bytes``, their common ending stored once:
    ``u8 n, suffix``, then per name ``u8 n, labels before the suffix``.

    The suffix is the longest run of whole labels every name ends with (the
    root at least), so the names of one Service (``_http._tcp.web.ns.svc...``,
    ``web.ns.svc...``) cost little more than their first labels.
    :func:`unpack_names` gives them back in order.
    """
    cdef list keys = list(names)
    cdef bytes first, k
    cdef size_t slen, pos, klen
    cdef const uint8_t* p
    if not keys:
        return b""
    for k in keys:
        if check_name(k, len(k)) != W_OK:
            raise FormatError("not an uncompressed wire name")
    first = keys[0]
    # candidate suffixes: every label start of the first name, longest first
    p = first
    pos = 0
    slen = 1
    while True:
        slen = len(first) - pos
        if _all_end_with_labels(keys, first[pos:]):
            break
        pos += p[pos] + 1
    out = bytearray()
    out.append(slen)
    out += first[pos:]
    for k in keys:
        klen = len(k) - slen
        out.append(klen)
        out += k[:klen]
    return bytes(out)


cdef bint _all_end_with_labels(list keys, bytes suffix):
    """Whether every name ends with ``suffix`` at one of its label boundaries."""
    cdef bytes k
    cdef size_t n = len(suffix), pos
    cdef const uint8_t* p
    for k in keys:
        if len(k) < n or k[len(k) - n:] != suffix:
            return False
        p = k
        pos = 0
        while pos < len(k) - n:
            pos += p[pos] + 1
        if pos != len(k) - n:
            return False
    return True


def unpack_names(bytes blob) -> list:
    """The names :func:`pack_names` packed (FormatError if ``blob`` is cut off)."""
    cdef const uint8_t* p = blob
    cdef size_t n = len(blob), pos, slen, klen
    if n == 0:
        return []
    slen = p[0]
    if 1 + slen > n:
        raise FormatError("packed names cut off")
    suffix = p[1:1 + slen]
    pos = 1 + slen
    out = []
    while pos < n:
        klen = p[pos]
        if pos + 1 + klen > n:
            raise FormatError("packed names cut off")
        out.append(p[pos + 1:pos + 1 + klen] + suffix)
        pos += 1 + klen
    return out


def name_from_text(str text) -> bytes:
    """Text name (relative names are taken as absolute) → wire name.

    Accepts ``\\X`` and ``\\DDD`` escapes; raises EncodeError for empty
    labels, labels over 63 bytes, names over 255 bytes or non-ASCII text.
    """
    cdef bytearray out = bytearray()
    cdef bytearray label = bytearray()
    cdef Py_ssize_t i = 0, n = len(text)
    if text == "." or text == "":
        return b"\x00"
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise EncodeError(f"name {text!r}: only ASCII names are supported (use IDNA/punycode)")
    while i < n:
        c = raw[i]
        if c == 0x5C:  # backslash
            if i + 1 >= n:
                raise EncodeError(f"name {text!r}: dangling escape")
            if 0x30 <= raw[i + 1] <= 0x39:
                if i + 3 >= n + 0 and not (i + 3 < n + 1):
                    raise EncodeError(f"name {text!r}: bad \\DDD escape")
                digits = raw[i + 1:i + 4]
                if len(digits) != 3 or not digits.isdigit() or int(digits) > 255:
                    raise EncodeError(f"name {text!r}: bad \\DDD escape")
                label.append(int(digits))
                i += 4
            else:
                label.append(raw[i + 1])
                i += 2
            continue
        if c == 0x2E:  # dot
            if not label:
                raise EncodeError(f"name {text!r}: empty label")
            if len(label) > MAX_LABEL:
                raise EncodeError(f"name {text!r}: label longer than 63 bytes")
            out.append(len(label))
            out += label
            label = bytearray()
            i += 1
            continue
        label.append(c)
        i += 1
    if label:
        if len(label) > MAX_LABEL:
            raise EncodeError(f"name {text!r}: label longer than 63 bytes")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME:
        raise EncodeError(f"name {text!r}: longer than 255 bytes")
    return bytes(out)


_PARSE_ERRORS = {
    W_SHORT: "message shorter than a DNS header",
    W_FORMERR: "malformed message",
    W_NOTQUERY: "message is a response (QR=1), not a query",
    W_NOTIMP: "message has no single question",
}


cdef class Query:
    """A parsed query (``fastdns.wire.parse_query``); read-only but for :meth:`cap_udp_size`."""

    cdef QueryInfo info
    cdef object _qname

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def opcode(self) -> int:
        return self.info.opcode

    @property
    def rd(self) -> bool:
        return bool(self.info.flags & F_RD)

    @property
    def cd(self) -> bool:
        return bool(self.info.flags & F_CD)

    @property
    def qname(self) -> str:
        """The name as received (case kept), absolute text with escapes."""
        if self._qname is None:
            self._qname = name_to_text(self.info.raw[:self.info.name_len])
        return self._qname

    @property
    def qname_wire(self) -> bytes:
        return self.info.raw[:self.info.name_len]

    @property
    def key(self) -> bytes:
        """The lower-cased wire name: the lookup key."""
        return self.info.key[:self.info.name_len]

    @property
    def qtype(self) -> int:
        return self.info.qtype

    @property
    def qclass(self) -> int:
        return self.info.qclass

    @property
    def udp_size(self):
        """The client's EDNS UDP payload size (at least 512), or None without EDNS."""
        return self.info.udp_size if self.info.edns else None

    def cap_udp_size(self, int size) -> None:
        """Treat the query as if it had advertised at most ``size`` bytes (*bufsize*;
        the one change a plugin may make to a parsed query; no effect without EDNS)."""
        if self.info.edns and 512 <= size < self.info.udp_size:
            self.info.udp_size = size

    @property
    def do(self) -> bool:
        return bool(self.info.do_bit)

    @property
    def nsid(self) -> bool:
        """The query asks for the server's identifier (an NSID option, RFC 5001)."""
        return bool(self.info.nsid)

    @property
    def edns_version(self):
        return self.info.edns_version if self.info.edns else None

    def __repr__(self) -> str:
        return (f"Query(id={self.id}, opcode={self.opcode}, rd={self.rd}, qname={self.qname!r}, "
                f"qtype={self.qtype}, qclass={self.qclass}, udp_size={self.udp_size}, do={self.do})")


def parse(data) -> Query:
    """Parse a DNS query; raise FormatError for anything malformed.

    A query with an opcode other than QUERY, or with EDNS version > 0, parses
    (check ``opcode`` / ``edns_version``); a server answers NOTIMP / BADVERS.
    """
    cdef const uint8_t[::1] view = data
    cdef Query q = Query.__new__(Query)
    cdef int rc
    if view.shape[0] == 0:
        raise FormatError(_PARSE_ERRORS[W_SHORT])
    rc = parse_query(&view[0], view.shape[0], &q.info)
    if rc == W_OK or rc == W_BADVERS or (rc == W_NOTIMP and q.info.question_end != 0):
        return q
    raise FormatError(_PARSE_ERRORS.get(rc, "malformed message"))


cdef int _section_index(section) except -1:
    if section in (1, "answer"):
        return SEC_ANSWER
    if section in (2, "authority"):
        return SEC_AUTHORITY
    if section in (3, "additional"):
        return SEC_ADDITIONAL
    raise EncodeError(f"unknown section {section!r}")


cdef bytes _ip_bytes(int af, str text):
    cdef uint8_t buf[16]
    b = text.encode("ascii", "replace")
    if inet_pton(af, b, buf) != 1:
        raise EncodeError(f"bad {'IPv4' if af == AF_INET else 'IPv6'} address {text!r}")
    return buf[:4] if af == AF_INET else buf[:16]


cdef bytes _txt_bytes(rdata):
    if isinstance(rdata, (str, bytes)):
        rdata = (rdata,)
    out = bytearray()
    for s in rdata:
        b = s.encode() if isinstance(s, str) else bytes(s)
        if len(b) > 255:
            raise EncodeError("TXT string longer than 255 bytes")
        out.append(len(b))
        out += b
    if not out:
        out.append(0)
    return bytes(out)


cdef inline bytes _wire_name(name):
    if name is None:
        return None
    if isinstance(name, bytes):
        return name
    return name_from_text(name)


cdef class ResponseBuilder:
    """Build a response to a parsed :class:`Query` from Python.

    ``add(section, name, rtype, ttl, rdata)`` with section ``"answer"``,
    ``"authority"`` or ``"additional"`` (or 1/2/3), ``name`` a text name, a
    wire name (bytes) or None for the question name, and rdata as in
    :mod:`fastdns.records` (A/AAAA text, CNAME/NS/PTR target, SRV tuple, SOA
    tuple, TXT strings) or raw rdata bytes for any other type.  ``to_wire()``
    encodes with name compression, truncating whole RRs to ``max_size``
    (default: the client's UDP size, 512 without EDNS) and setting TC when an
    answer or authority RR had to go.
    """

    cdef Query query
    cdef public int rcode
    cdef public bint aa
    cdef public bint ra
    cdef list rrs

    def __init__(self, Query query, int rcode=0, bint aa=True, bint ra=False):
        self.query = query
        self.rcode = rcode
        self.aa = aa
        self.ra = ra
        self.rrs = []

    def add(self, section, name, int rtype, ttl, rdata):
        cdef int sec = _section_index(section)
        cdef bytes owner = _wire_name(name) if name is not None else self.query.qname_wire
        cdef long long t = ttl
        if not 0 <= t <= 0x7FFFFFFF:
            raise EncodeError(f"TTL {ttl} out of range")
        if rtype == T_A:
            data = _ip_bytes(AF_INET, rdata)
        elif rtype == T_AAAA:
            data = _ip_bytes(AF_INET6, rdata)
        elif rtype == T_CNAME or rtype == T_NS or rtype == T_PTR:
            data = (_wire_name(rdata),)
        elif rtype == T_SRV:
            if len(rdata) != 4:
                raise EncodeError("SRV rdata is (priority, weight, port, target)")
            data = (int(rdata[0]), int(rdata[1]), int(rdata[2]), _wire_name(rdata[3]))
            for v in data[:3]:
                if not 0 <= v <= 0xFFFF:
                    raise EncodeError(f"SRV field {v} out of range")
        elif rtype == T_SOA:
            if len(rdata) != 7:
                raise EncodeError("SOA rdata is (mname, rname, serial, refresh, retry, expire, minimum)")
            data = (_wire_name(rdata[0]), _wire_name(rdata[1])) + tuple(int(v) for v in rdata[2:])
            for v in data[2:]:
                if not 0 <= v <= 0xFFFFFFFF:
                    raise EncodeError(f"SOA field {v} out of range")
        elif rtype == T_TXT:
            data = _txt_bytes(rdata)
        elif isinstance(rdata, (bytes, bytearray)):
            data = bytes(rdata)
        else:
            raise EncodeError(f"type {rtype}: give rdata as wire bytes")
        self.rrs.append((sec, owner, rtype, <uint32_t>t, data))
        return self

    def to_wire(self, max_size=None, bint compress=True) -> bytes:
        cdef uint8_t buf[65535]
        cdef Writer w
        cdef size_t limit, n
        cdef int rc, sec
        cdef bytes owner, target, mname, rname, data
        cdef QueryInfo* q = &self.query.info
        if max_size is None:
            limit = q.udp_size
        else:
            limit = max_size
        if limit < HEADER_LEN or limit > MAX_MSG:
            raise EncodeError(f"max_size {limit} out of range")
        if self.rcode > 0xF and not q.edns:
            raise EncodeError("an extended rcode needs EDNS in the query")
        w_init(&w, buf, MAX_MSG, limit)
        w.nocomp = not compress
        w_header(&w, q.id, F_QR | (q.flags & (0x7800 | F_RD | F_CD))
                 | (F_AA if self.aa else 0) | (F_RA if self.ra else 0), self.rcode)
        if w_question(&w, q.raw, q.name_len, q.qtype, q.qclass) != W_OK or w.pos > limit:
            raise EncodeError("question does not fit")
        if q.edns:
            w.reserve = 11
        for sec, owner, rtype, ttl, rd in sorted(self.rrs, key=_by_section):
            if rtype == T_CNAME or rtype == T_NS or rtype == T_PTR:
                target = rd[0]
                rc = w_rr_name(&w, sec, owner, len(owner), rtype, ttl, target, len(target))
            elif rtype == T_SRV:
                target = rd[3]
                rc = w_rr_srv(&w, sec, owner, len(owner), ttl, rd[0], rd[1], rd[2],
                              target, len(target))
            elif rtype == T_SOA:
                mname = rd[0]
                rname = rd[1]
                rc = w_rr_soa(&w, sec, owner, len(owner), ttl, mname, len(mname), rname,
                              len(rname), rd[2], rd[3], rd[4], rd[5], rd[6])
            else:
                data = rd
                rc = w_rr_raw(&w, sec, owner, len(owner), rtype, 1, ttl, data, len(data))
            if rc == W_BADNAME:
                raise EncodeError("invalid name in record")
        if q.edns:
            w_opt(&w, EDNS_UDP, q.do_bit)
        n = w_finish(&w)
        return buf[:n]


def _by_section(rr):
    return rr[0]


def body_from_response(data, bint any_qname=False) -> bytes:
    """A complete response (wire) → a stored body for the table or the cache.

    ``any_qname``: the response was written without compression, so the body
    may be emitted behind any question (zone-wide negative answers).
    """
    cdef const uint8_t[::1] view = data
    cdef uint8_t out[70000]
    cdef size_t n = 0
    if view.shape[0] == 0 or body_from_wire(&view[0], view.shape[0], out, sizeof(out), &n) != W_OK:
        raise FormatError("response cannot be stored (malformed, compressed question or misplaced OPT)")
    if any_qname:
        (<BodyHdr*>out).qname_len = ANY_QNAME
    return out[:n]


def response_from_body(Query query, body, uint32_t age=0, max_size=None) -> bytes:
    """Emit the response to ``query`` from a stored body (what the hot path does)."""
    cdef const uint8_t[::1] view = body
    cdef uint8_t out[65535]
    cdef size_t limit = query.info.udp_size if max_size is None else max_size
    cdef size_t n
    n = emit_body(&query.info, &view[0], view.shape[0], age, limit, out, sizeof(out))
    if n == 0:
        raise EncodeError("body does not match the query or the size limit")
    return out[:n]


def response_with_rcode(Query query, int rcode) -> bytes:
    """An empty response to ``query`` carrying ``rcode`` (e.g. REFUSED, SERVFAIL)."""
    cdef uint8_t out[600]
    cdef size_t n = emit_rcode(&query.info, rcode, 0, out, sizeof(out))
    return out[:n]


def error_response(data, int rcode=-1):
    """The response a server sends to a query it cannot parse, or None to drop it.

    FORMERR for malformed messages (echoing what parsed), NOTIMP for other
    opcodes, BADVERS for EDNS versions > 0; None for responses and runts.
    """
    cdef const uint8_t[::1] view = data
    cdef QueryInfo q
    cdef uint8_t out[600]
    cdef int rc
    cdef size_t n
    if view.shape[0] == 0:
        return None
    rc = parse_query(&view[0], view.shape[0], &q)
    if rc == W_OK or rc == W_SHORT or rc == W_NOTQUERY:
        return None
    if rc == W_FORMERR:
        rcode = 1
    elif rc == W_NOTIMP:
        rcode = 4
    elif rc == W_BADVERS:
        rcode = 16
    n = emit_rcode(&q, rcode, 0, out, sizeof(out))
    return out[:n] if n else None


def _c_roundtrip_loop(bytes packet, bytes body, long n) -> int:
    """Benchmark helper: parse + emit a one-A answer ``n`` times in C; ns elapsed."""
    cdef QueryInfo q
    cdef uint8_t out[1500]
    cdef const uint8_t* p = packet
    cdef const uint8_t* b = body
    cdef size_t plen = len(packet), blen = len(body), total = 0
    cdef long i
    cdef timespec t0, t1
    with nogil:
        clock_gettime(CLOCK_MONOTONIC, &t0)
        for i in range(n):
            if parse_query(p, plen, &q) == W_OK:
                total += emit_body(&q, b, blen, 0, q.udp_size, out, sizeof(out))
        clock_gettime(CLOCK_MONOTONIC, &t1)
    if total == 0:
        raise EncodeError("benchmark packet did not round-trip")
    return (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
