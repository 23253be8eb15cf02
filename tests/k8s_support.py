"""Helpers for the Kubernetes tests: object builders, Answer -> dnspython; the fake API
server is :class:`fastdns._testing.k8sapi.FakeAPI` (re-exported here)."""

from __future__ import annotations

import json
import time
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rrset

from fastdns._testing.k8sapi import PATHS, FakeAPI  # noqa: F401 (re-exported for the tests)
from fastdns.records import AAAA, CNAME, NS, PTR, SOA, SRV, TXT, A, Answer, Record


# -- object builders (raw dicts, as kubectl/the API print them) -------------------

def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str, ns: str = "default", ips: list[str] | None = None, ports=None,
            headless: bool = False, external: str | None = None, labels=None,
            publish_not_ready: bool = False) -> dict:
    spec: dict[str, Any] = {}
    if external is not None:
        spec = {"type": "ExternalName", "externalName": external}
    elif headless:
        spec = {"clusterIP": "None", "clusterIPs": ["None"]}
    else:
        ips = ips or ["10.96.0.1"]
        spec = {"type": "ClusterIP", "clusterIP": ips[0], "clusterIPs": ips}
    if ports is not None:
        spec["ports"] = [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint(ip: str, ready: bool | None = True, hostname: str | None = None,
             pod: str | None = None) -> dict:
    ep: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if hostname:
        ep["hostname"] = hostname
    if pod:
        ep["targetRef"] = {"kind": "Pod", "name": pod}
    return ep


def slice_(name: str, svc: str, eps: list[dict], ns: str = "default", ports=None,
           family: str = "IPv4", labels=None) -> dict:
    lb = {"kubernetes.io/service-name": svc}
    lb.update(labels or {})
    d: dict[str, Any] = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                         "metadata": {"name": name, "namespace": ns, "labels": lb},
                         "addressType": family, "endpoints": eps}
    if ports is not None:
        d["ports"] = [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]
    return d


def pod(name: str, ip: str, ns: str = "default", phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "status": {"podIP": ip, "phase": phase}}


# -- Answer → dnspython ----------------------------------------------------------------

def rdata_text(rec: Record) -> str:
    r = rec.rdata
    if rec.rtype in (A, AAAA, CNAME, NS, PTR):
        return str(r)
    if rec.rtype == SRV:
        return " ".join(str(x) for x in r)  # type: ignore[union-attr]
    if rec.rtype == SOA:
        return " ".join(str(x) for x in r)  # type: ignore[union-attr]
    if rec.rtype == TXT:
        return " ".join(json.dumps(s) for s in r)  # type: ignore[union-attr]
    raise AssertionError(f"unexpected rtype {rec.rtype}")


def to_message(qname: str, qtype: int, ans: Answer) -> dns.message.Message:
    """Encode ``ans`` with dnspython, to wire and back (proves the records are valid)."""
    q = dns.message.make_query(qname, qtype)
    r = dns.message.make_response(q)
    r.set_rcode(ans.rcode)
    if ans.aa:
        r.flags |= dns.flags.AA
    for section, recs in ((r.answer, ans.answer), (r.authority, ans.authority),
                          (r.additional, ans.additional)):
        for rec in recs:
            rrset = r.find_rrset(section, dns.name.from_text(rec.name), dns.rdataclass.IN,
                                 rec.rtype, create=True)
            rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rec.rtype, rdata_text(rec)), rec.ttl)
    return dns.message.from_wire(r.to_wire())


def rrsets(lines: list[str]) -> set[tuple[str, int, int, str]]:
    """``"name ttl IN TYPE rdata"`` lines → comparable tuples (via dnspython)."""
    out = set()
    for line in lines:
        rr = dns.rrset.from_text(*_split(line))
        for rd in rr:
            out.add((rr.name.to_text().lower(), rr.ttl, rr.rdtype, rd.to_text().lower()))
    return out


def _split(line: str) -> tuple:
    name, ttl, cls, typ, *rest = line.split()
    return (name, int(ttl), cls, typ, " ".join(rest))


def section(msg_section: list) -> set[tuple[str, int, int, str]]:
    return {(rr.name.to_text().lower(), rr.ttl, rr.rdtype, rd.to_text().lower())
            for rr in msg_section for rd in rr}


def wait_for(cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
