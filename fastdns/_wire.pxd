# C-level DNS wire codec: the contract other Cython modules cimport.
#
# Every function here is `noexcept nogil`: it returns a status code (W_OK or
# a negative W_*), never raises, and reads or writes only within the lengths
# it is given.  Python-facing wrappers in _wire.pyx turn codes into errors.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from consts cimport MAX_COMP, MAX_RRS

cdef enum:
    W_OK = 0
    W_SHORT = -1        # shorter than a header: drop silently
    W_FORMERR = -2      # malformed: answer FORMERR
    W_NOTIMP = -3       # opcode other than QUERY: answer NOTIMP
    W_BADVERS = -4      # EDNS version > 0: answer BADVERS (rcode 16)
    W_NOTQUERY = -5     # QR set: a response, drop silently
    W_NOSPACE = -6      # writer: the buffer is full
    W_BADNAME = -7      # writer: a name that is not valid wire format

cdef enum:
    SEC_QUESTION = 0
    SEC_ANSWER = 1
    SEC_AUTHORITY = 2
    SEC_ADDITIONAL = 3

cdef enum:
    T_A = 1
    T_NS = 2
    T_CNAME = 5
    T_SOA = 6
    T_PTR = 12
    T_TXT = 16
    T_AAAA = 28
    T_SRV = 33
    T_OPT = 41

cdef enum:
    F_QR = 0x8000
    F_AA = 0x0400
    F_TC = 0x0200
    F_RD = 0x0100
    F_RA = 0x0080
    F_AD = 0x0020
    F_CD = 0x0010

cdef struct QueryInfo:
    uint16_t id
    uint16_t flags          # header flags word as received
    uint16_t qdcount
    uint16_t ancount
    uint16_t nscount
    uint16_t arcount
    uint8_t opcode
    uint16_t qtype
    uint16_t qclass
    uint16_t question_end   # offset just past the question
    uint16_t name_len       # wire length of the (uncompressed) qname, root byte included
    uint8_t key[256]        # qname, uncompressed, ASCII lower-cased: the lookup key
    uint8_t raw[256]        # qname, uncompressed, exactly as received (0x20 case kept)
    bint edns               # an OPT record was present
    uint16_t udp_size       # max(512, OPT payload size); 512 without EDNS
    bint do_bit
    uint8_t edns_version
    bint nsid               # the OPT carries an NSID option (RFC 5001: asks for the server's id)

cdef struct Writer:
    uint8_t* buf
    size_t cap              # bytes available in buf: never written past
    size_t limit            # truncation limit (client's payload size) <= cap
    size_t reserve          # bytes kept free under limit (for a final OPT)
    size_t pos
    uint16_t counts[4]      # QD, AN, NS, AR
    uint16_t comp[MAX_COMP] # offsets of label sequences that later names may point to
    int ncomp
    bint truncated          # an answer/authority RR did not fit: set TC
    bint stopped            # an RR did not fit: nothing more is written
    bint overflow           # a primitive ran out of room (internal)
    bint nocomp             # write no compression pointers at all
    uint16_t id
    uint16_t flags
    uint16_t rcode          # full (extended) rcode: low 4 bits in header, rest in OPT
    int nrr                 # RRs recorded in rr_end / rr_sec
    uint16_t rr_end[MAX_RRS]
    uint8_t rr_sec[MAX_RRS]

# names
cdef int read_name(const uint8_t* msg, size_t msglen, size_t off, uint8_t* out,
                   uint16_t* out_len, size_t* next_off, bint lower) noexcept nogil
cdef int name_eq_ci(const uint8_t* a, const uint8_t* b, size_t n) noexcept nogil
cdef void lower_name(uint8_t* name, size_t n) noexcept nogil
cdef int check_name(const uint8_t* name, size_t n) noexcept nogil

# queries
cdef int parse_query(const uint8_t* msg, size_t msglen, QueryInfo* q) noexcept nogil

# responses
cdef void w_init(Writer* w, uint8_t* buf, size_t cap, size_t limit) noexcept nogil
cdef void w_header(Writer* w, uint16_t id, uint16_t flags, uint16_t rcode) noexcept nogil
cdef int w_question(Writer* w, const uint8_t* name, size_t nlen, uint16_t qtype,
                    uint16_t qclass) noexcept nogil
cdef int w_rr_raw(Writer* w, int sec, const uint8_t* name, size_t nlen, uint16_t rtype,
                  uint16_t rclass, uint32_t ttl, const uint8_t* rdata, size_t rdlen) noexcept nogil
cdef int w_rr_name(Writer* w, int sec, const uint8_t* name, size_t nlen, uint16_t rtype,
                   uint32_t ttl, const uint8_t* target, size_t tlen) noexcept nogil
cdef int w_rr_srv(Writer* w, int sec, const uint8_t* name, size_t nlen, uint32_t ttl,
                  uint16_t prio, uint16_t weight, uint16_t port,
                  const uint8_t* target, size_t tlen) noexcept nogil
cdef int w_rr_soa(Writer* w, int sec, const uint8_t* name, size_t nlen, uint32_t ttl,
                  const uint8_t* mname, size_t mlen, const uint8_t* rname, size_t rlen,
                  uint32_t serial, uint32_t refresh, uint32_t retry, uint32_t expire,
                  uint32_t minimum) noexcept nogil
cdef int w_opt(Writer* w, uint16_t udp_size, bint do_bit) noexcept nogil
cdef size_t w_finish(Writer* w) noexcept nogil

# big-endian helpers
cdef inline uint16_t ld16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t ld32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline void st16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v >> 8
    p[1] = v & 0xFF

cdef inline void st32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF

# Stored responses ("bodies"): what the answer table and the shared cache hold.
# Layout: BodyHdr, then nrr x RRMeta, then the RR sections' wire bytes (OPT
# excluded) exactly as they follow a question whose name is qname_len bytes
# long, so compression pointers stay valid when the client's question (same
# name, any case) is written in front of them.
cdef enum:
    ANY_QNAME = 0xFFFF

cdef struct BodyHdr:
    uint16_t flags          # AA / RA / AD bits to set in the header
    uint16_t rcode          # full rcode (low 4 bits header, rest OPT)
    uint16_t an
    uint16_t ns
    uint16_t ar
    uint16_t nrr
    uint16_t qname_len      # ANY_QNAME: the blob has no pointers, fits any question
    uint16_t blob_len
    uint32_t min_ttl        # smallest TTL among the RRs (0xFFFFFFFF if none)

cdef struct RRMeta:
    uint16_t end            # offset in the blob just past this RR
    uint16_t ttl_off        # offset in the blob of this RR's TTL field

cdef int body_from_wire(const uint8_t* msg, size_t msglen, uint8_t* out, size_t cap,
                        size_t* out_len) noexcept nogil
cdef size_t emit_body(const QueryInfo* q, const uint8_t* body, size_t body_len,
                      uint32_t age, size_t limit, uint8_t* out, size_t cap) noexcept nogil
cdef size_t emit_rcode(const QueryInfo* q, uint16_t rcode, uint16_t flags, uint8_t* out,
                       size_t cap) noexcept nogil
