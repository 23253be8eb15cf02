"""Pod A/AAAA records ``a-b-c-d.<ns>.pod.<zone>`` synthesised from the query name.

This is the reference for what a worker answers under ``pods insecure``
(CoreDNS's ``findPods`` and ``parseRequest``), and for ``pods verified`` when
given the index.  The worker's C implementation is tested against it.

Rules (CoreDNS plugin/kubernetes/kubernetes.go, parse.go):

* the label before ``<ns>.pod.<zone>`` is the pod label; three dashes and no
  ``--`` is IPv4 (``1-2-3-4``), anything else IPv6 (``fd00--1``);
* one or two extra labels in front are accepted and ignored
  (``x.1-2-3-4.ns.pod.zone`` answers as ``1-2-3-4.ns.pod.zone``), more → NXDOMAIN;
* ``pods disabled`` → NXDOMAIN; the namespace must be exposed (``namespaces``
  list, and existing in the cluster: with ``index=None`` the caller checks
  that ``<ns>.pod.<zone>.`` is in its compiled table);
* ``insecure``: any valid IP answers; ``verified``: only if a live pod in that
  namespace has that IP;
* A for an IPv4 pod, AAAA for IPv6, the other one NODATA; SRV answers
  ``0 100 0 <label>.<ns>.pod.<zone>.`` with the address in the additional
  section (CoreDNS builds SRV from the port-less pod record); other types
  NODATA; AXFR/IXFR REFUSED.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fastdns.plugins.kubernetes.index import ClusterIndex
from fastdns.plugins.kubernetes.names import is_reverse_zone, undash, zone_of
from fastdns.records import AAAA, NOERROR, NXDOMAIN, REFUSED, SOA, SRV, A, Answer, Record

__all__ = ["pod_answer", "pod_soa"]


@lru_cache(maxsize=64)
def pod_soa(zone: str, ttl: int, serial: int = 0) -> Record:
    """The SOA the compiler puts in negative answers for ``zone``."""
    return Record(zone, SOA, min(ttl, 300),
                  (f"ns.dns.{zone}", f"hostmaster.{zone}", serial, 7200, 1800, 86400, ttl))


def pod_answer(qname: str, qtype: int, conf: Any, index: ClusterIndex | None,
               *, serial: int = 0) -> Answer | None:
    """The answer to ``qname``/``qtype`` if it is a pod name, else None.

    None means "not a pod name (or ``pod.<zone>`` / ``<ns>.pod.<zone>`` themselves):
    look it up in the compiled table".  ``conf`` is the KubernetesConf;
    ``index`` the cluster index (required for ``pods verified``).
    """
    name = qname.lower()
    if not name.endswith("."):
        name += "."
    zones = tuple(z.lower() for z in conf.zones if not is_reverse_zone(z.lower()))
    zone = zone_of(name, zones)
    if zone is None or name == zone:
        return None
    labels = name[: -len(zone) - 1].split(".")
    if len(labels) < 3 or labels[-1] != "pod":
        return None
    ttl = int(conf.ttl)
    soa = pod_soa(zone, ttl, serial)
    nxdomain = Answer(NXDOMAIN, (), (soa,))
    nodata = Answer(NOERROR, (), (soa,))
    if len(labels) > 5:
        return nxdomain  # parseRequest: too many labels
    ns, podlabel = labels[-2], labels[-3]
    if conf.pods == "disabled":
        return nxdomain
    if conf.namespaces and ns not in conf.namespaces:
        return nxdomain
    if index is not None and ns not in index.namespaces:
        return nxdomain
    try:
        ip = ipaddress.ip_address(undash(podlabel))
    except ValueError:
        return nxdomain
    if conf.pods == "verified":
        if index is None:
            raise ValueError("pods verified needs the cluster index")
        text = str(ip)
        pods = [p for p in index.pods_with_ip(text) if p.metadata.namespace.lower() == ns]
        if not pods:
            # the index keeps the API's spelling; compare parsed forms for IPv6
            pods = [p for ips, keys in index.pods_by_ip.items()
                    if _same_ip(ips, ip) for p in (index.pods[k] for k in keys)
                    if p.metadata.namespace.lower() == ns]
        if not pods:
            return nxdomain
        count = len(pods)
    else:
        count = 1
    if qtype in (251, 252):
        return Answer(REFUSED, (), (), (), True)
    rtype = A if ip.version == 4 else AAAA
    if qtype == rtype:
        return Answer(NOERROR, (Record(name, rtype, ttl, str(ip)),))
    if qtype == SRV:
        target = f"{podlabel}.{ns}.pod.{zone}"
        weight = max(1, math.floor((100.0 / (100.0 * count)) * 100.0))
        return Answer(NOERROR, (Record(name, SRV, ttl, (0, weight, 0, target)),), (),
                      (Record(target, rtype, ttl, str(ip)),))
    return nodata


def _same_ip(text: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


class PodReference:
    """The worker-side handler of ``pods insecure``: SRV / AXFR on pod names (the
    engine synthesises A/AAAA in C and hands these over)."""

    plugin = "kubernetes"

    def __init__(self, conf: Any) -> None:
        self.conf = conf

    def resolve(self, q: Any, packet: bytes, reply: Callable[[bytes], None], tcp: bool) -> bool:
        from fastdns import wire

        answer = pod_answer(q.qname, q.qtype, self.conf, None)
        if answer is None:
            return False
        limit = 65535 if tcp else (min(q.udp_size, 1232) if q.udp_size else 512)
        reply(wire.make_response(q, answer, max_size=limit))
        return True
