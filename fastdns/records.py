"""Pure-Python answer data: what compilers (Kubernetes, hosts...) produce.

The coordinator compiles its sources into :class:`Answer` objects keyed by
``(name, qtype)``; ``fastdns._answers`` encodes them once into wire blobs that
workers copy on the hot path.  Nothing here touches the network.

Names are absolute, lower-case, with the trailing dot
(``"nginx-svc.default.svc.cluster.local."``).  ``rdata`` by type:

====== ===============================================================
A      ``"10.96.0.10"``
AAAA   ``"fd00::10"``
CNAME  ``"target.example.com."`` (also NS, PTR)
SRV    ``(priority, weight, port, "target.")``
SOA    ``(mname, rname, serial, refresh, retry, expire, minimum)``
TXT    ``("string", ...)``
====== ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

# RR types and rcodes used across fastdns (same values as dnspython's).
A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 16, 28, 33, 41
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

RData = str | tuple


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record (class IN)."""

    name: str
    rtype: int
    ttl: int
    rdata: RData


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete response body: rcode plus the three RR sections.

    ``aa`` is the authoritative-answer flag.  A NODATA answer is
    ``Answer(NOERROR, (), (soa,))``; an NXDOMAIN is ``Answer(NXDOMAIN, (), (soa,))``.
    """

    rcode: int
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = field(default=())
    aa: bool = True
