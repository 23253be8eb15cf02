# Every size and limit the C-level code uses, in one place (cimport-only).

cdef enum:
    MAX_NAME = 255          # RFC 1035 2.3.4: a name's wire length
    MAX_LABEL = 63          # RFC 1035 2.3.4: one label
    MAX_PTR_HOPS = 127      # compression pointers followed while reading one name
    HEADER_LEN = 12
    MIN_UDP = 512           # RFC 1035 payload without EDNS
    EDNS_UDP = 1232         # what we advertise (DNS flag day 2020)
    MAX_MSG = 65535
    MAX_COMP = 128          # name offsets remembered for compression while writing
    MAX_RRS = 512           # RRs one writer tracks for truncation
