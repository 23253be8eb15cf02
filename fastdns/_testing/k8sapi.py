"""A small Kubernetes API server for tests and benchmarks: list + watch over real HTTP.

:class:`FakeAPI` serves Services, EndpointSlices, Namespaces and Pods the way
the API server does for a client that lists then watches: ``*List`` bodies
with a resourceVersion, chunked watch streams (``?watch=true``) from a
resourceVersion, bookmarks when asked for, paged lists (``limit`` /
``continue``), ``410 Gone`` for a compacted history or an expired continue
token, and abrupt connection drops on demand.  It listens on 127.0.0.1
only; :meth:`FakeAPI.kubeconfig` writes a kubeconfig pointing at it.
"""

from __future__ import annotations

import json
from collections import Counter
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeAPI", "PATHS"]


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
        self.pages: dict[str, tuple[list[dict], int, int]] = {}   # continue token → list state
        self.watching: Counter[str] = Counter()   # kind → watch streams listening now
        self.list_id = 0
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
                    status, body = api._list(kind, q)
                    self._json(status, body)

            def _json(self, code: int, body: dict | bytes) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _list(self, kind: str, q: dict) -> tuple[int, dict]:
        """A list response; with ``limit``, one page and a ``continue`` token that
        serves the next page from the same state (as the API server does)."""
        with self.cond:
            cont = q.get("continue")
            if cont:
                taken = self.pages.get(cont)
                if taken is None:
                    return 410, {"kind": "Status", "code": 410, "reason": "Expired",
                                 "message": "the continue token has expired"}
                items, rv, offset = taken
            else:
                items = [dict(o, metadata=dict(o["metadata"], resourceVersion=str(orv)))
                         for (o, orv) in self.objects[kind].values()]
                rv, offset = self.rv, 0
            limit = int(q.get("limit") or 0)
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            page = items[offset:offset + limit] if limit > 0 else items[offset:]
            if limit > 0 and offset + limit < len(items):
                self.list_id += 1
                token = f"{rv}-{self.list_id}"
                self.pages[token] = (items, rv, offset + limit)
                meta["continue"] = token
        return 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta,
                     "items": page}

    def expire_pages(self) -> None:
        """Forget every continue token: a list in progress gets 410 on its next page."""
        with self.cond:
            self.pages.clear()

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
            self.watching[kind] += 1      # from here on, a new bookmark reaches this stream
            try:
                self._stream(h, kind, q, since, sent_bm, gen, deadline, send)
            finally:
                self.watching[kind] -= 1

    def _stream(self, h: BaseHTTPRequestHandler, kind: str, q: dict, since: int, sent_bm: int,
                gen: int, deadline: float, send: Any) -> None:
        """Send events (and bookmarks) of ``kind`` after ``since`` until the deadline;
        called with :attr:`cond` held."""
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
