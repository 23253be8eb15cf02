"""Helpers for the Kubernetes tests: object builders, Answer → dnspython, a fake API server."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rrset

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


def wait_for(cond, timeout: float = 8.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- a small Kubernetes list/watch API server ------------------------------------------

PATHS = {
    "/api/v1/services": "Service",
    "/apis/discovery.k8s.io/v1/endpointslices": "EndpointSlice",
    "/api/v1/namespaces": "Namespace",
    "/api/v1/pods": "Pod",
}


class FakeAPI:
    """Real HTTP/1.1 list + chunked watch streams with resourceVersions, bookmarks, 410 Gone."""

    def __init__(self) -> None:
        self.rv = 1
        self.objects: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in PATHS.values()}
        self.events: list[tuple[int, str, str, dict]] = []  # rv, kind, type, object
        self.compacted = 0
        self.cond = threading.Condition()
        self.generation = 0  # bump to cut every open watch (drop the connection)
        self.bookmarks: list[str] = []
        self.requests: list[tuple[str, dict]] = []
        self.stopping = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                u = urllib.parse.urlparse(self.path)
                q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
                kind = PATHS.get(u.path)
                api.requests.append((u.path, q))
                if kind is None:
                    self._json(404, {"kind": "Status", "code": 404})
                    return
                if q.get("watch") == "true":
                    api._watch(self, kind, q)
                else:
                    with api.cond:
                        items = [dict(o, metadata=dict(o["metadata"], resourceVersion=str(rv)))
                                 for (o, rv) in api.objects[kind].values()]
                        body = {"kind": f"{kind}List", "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(api.rv)}, "items": items}
                    self._json(200, body)

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- state changes (each gets the next resourceVersion) ----------------------------
    def put(self, obj: dict) -> int:
        kind = obj["kind"]
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self.cond:
            self.rv += 1
            typ = "MODIFIED" if key in self.objects[kind] else "ADDED"
            self.objects[kind][key] = (obj, self.rv)
            self.events.append((self.rv, kind, typ, obj))
            self.cond.notify_all()
            return self.rv

    def delete(self, obj: dict) -> int:
        kind = obj["kind"]
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self.cond:
            self.rv += 1
            self.objects[kind].pop(key, None)
            self.events.append((self.rv, kind, "DELETED", obj))
            self.cond.notify_all()
            return self.rv

    def compact(self) -> None:
        """Forget history: watches from older resourceVersions get 410 Gone."""
        with self.cond:
            self.compacted = self.rv
            self.events.clear()

    def drop_watches(self) -> None:
        """Cut every open watch connection abruptly (no final chunk)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def bookmark(self) -> str:
        with self.cond:
            self.rv += 1
            self.bookmarks.append(str(self.rv))
            self.cond.notify_all()
            return str(self.rv)

    def _watch(self, h: BaseHTTPRequestHandler, kind: str, q: dict) -> None:
        since = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 30)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(ev: dict) -> None:
            data = json.dumps(ev).encode() + b"\n"
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        deadline = time.monotonic() + timeout
        with self.cond:
            gen = self.generation
            if since < self.compacted:
                send({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                  "reason": "Expired",
                                                  "message": "too old resource version"}})
                h.wfile.write(b"0\r\n\r\n")
                return
            sent_bm = len(self.bookmarks)
            while not self.stopping:
                for rv, k, typ, obj in self.events:
                    if rv > since and k == kind:
                        o = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(rv)))
                        send({"type": typ, "object": o})
                        since = rv
                if len(self.bookmarks) > sent_bm:
                    for bm in self.bookmarks[sent_bm:]:
                        if q.get("allowWatchBookmarks") == "true":
                            send({"type": "BOOKMARK", "object": {
                                "kind": kind, "metadata": {"resourceVersion": bm}}})
                    sent_bm = len(self.bookmarks)
                if self.generation != gen:
                    h.close_connection = True
                    h.wfile.flush()
                    h.connection.shutdown(2)  # abrupt: no terminating chunk
                    return
                if time.monotonic() > deadline:
                    break
                self.cond.wait(0.1)
        h.wfile.write(b"0\r\n\r\n")

    def start(self) -> FakeAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: str) -> str:
        with open(path, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: http://127.0.0.1:{self.port}
users:
- name: tester
  user:
    token: test-token
contexts:
- name: test
  context: {{cluster: test, user: tester}}
current-context: test
""")
        return path
