"""Where the cluster comes from: a snapshot file, or the live API (list + watch).

* :class:`SnapshotSource` reads what ``kubectl get services,endpointslices,
  namespaces,pods -A -o yaml|json`` prints (a ``List``/``*List`` or a
  multi-document stream) and re-reads it when it changes; a broken file keeps
  the last good state.
* :class:`WatchSource` lists and watches the API with the official
  ``kubernetes`` client (config, auth, requests) but decodes the raw JSON
  (``_preload_content=False``) with msgspec into the slim records of
  :mod:`.objects`.  Both feed a :class:`ClusterIndex` and a
  :class:`ZoneCompiler`; every change reaches ``on_delta`` as one Delta.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from fastdns.errors import KubernetesError, SnapshotError
from fastdns.files import FileRefused, read_limited
from fastdns.limits import SNAPSHOT_FILE_MAX
from fastdns.plugins.kubernetes.compile import Delta, ZoneCompiler
from fastdns.plugins.kubernetes.index import ADDED, DELETED, MODIFIED, ClusterIndex, Event
from fastdns.plugins.kubernetes.objects import (KINDS, Compactor, Meta, Namespace, compact,
                                              decode_object, describe)

__all__ = ["SnapshotSource", "WatchSource", "iter_objects", "make_api_client"]

log = logging.getLogger("fastdns.plugin.kubernetes")

OnDelta = Callable[[Delta], None]


# -- snapshot files -------------------------------------------------------------

def _documents(path: str, text: str) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            doc = msgspec.json.decode(text.encode())
        except msgspec.DecodeError as e:
            raise SnapshotError(f"{path}: invalid JSON: {e}") from None
        return doc if isinstance(doc, list) else [doc]
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.load_all(text, Loader=loader))  # noqa: S506 (safe loader)
    except yaml.YAMLError as e:
        raise SnapshotError(f"{path}: invalid YAML: {e}") from None


class _JsonList(msgspec.Struct):
    kind: str = ""
    items: list[msgspec.Raw] | None = None


class _JsonHead(msgspec.Struct):
    kind: str | None = None
    items: msgspec.Raw | None = None


_JSON_LIST = msgspec.json.Decoder(_JsonList)
_JSON_HEAD = msgspec.json.Decoder(_JsonHead)


def _json_list(data: bytes) -> tuple[list[Any], str | None] | None:
    """The raw items of a JSON ``List``/``*List`` and the kind they imply;
    None if ``data`` is another shape (the generic reader then says why)."""
    try:
        lst = _JSON_LIST.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not lst.kind.endswith("List") or lst.items is None:
        return None
    return lst.items, lst.kind[:-4] or None


def _iter_json_items(path: str, items: list[Any], implied: str | None,
                     slim: Compactor) -> Iterator[Any]:
    """Decode raw JSON items one by one straight into the slim records (no dict
    of the whole cluster)."""
    for i, raw in enumerate(items):
        try:
            head = _JSON_HEAD.decode(raw)
            k = head.kind or implied
            if k in _DECODERS:
                yield slim(_DECODERS[k].decode(raw))
                continue
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass                  # decode it as a dict below for a message naming it
        obj = _decode_item(path, f"document 1 item {i}", msgspec.json.decode(raw), implied, slim)
        if obj is not None:
            yield obj


def iter_objects(path: str, slim: Compactor = compact) -> Iterator[Any]:
    """Read ``path`` and yield every Service/EndpointSlice/Namespace/Pod in it.

    Unknown kinds are logged and skipped; a broken file or an object missing
    a required field raises :class:`SnapshotError` naming the file and object
    (possibly after some objects were yielded: collect before applying).
    """
    try:
        try:
            data = read_limited(path, SNAPSHOT_FILE_MAX, "snapshot")
        except FileRefused as exc:
            raise SnapshotError(f"{path}: cannot read snapshot: {exc}") from None
        if data.lstrip()[:1] == b"{":
            found = _json_list(data)
            if found is not None:
                yield from _iter_json_items(path, found[0], found[1], slim)
                return
        text = data.decode("utf-8")
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read snapshot: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SnapshotError(f"{path}: not UTF-8 text: {e}") from None
    for n, doc in enumerate(_documents(path, text)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SnapshotError(f"{path}: document {n + 1} is not a Kubernetes object")
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            implied = kind[:-4] or None
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise SnapshotError(f"{path}: document {n + 1}: {kind}.items is not a list")
        else:
            implied, items = None, [doc]
        for i, raw in enumerate(items):
            obj = _decode_item(path, f"document {n + 1} item {i}", raw, implied, slim)
            if obj is not None:
                yield obj


def _decode_item(path: str, where: str, raw: Any, implied: str | None,
                 slim: Compactor) -> Any:
    """Decode one object of a snapshot; None for kinds fastdns does not read (logged)."""
    if not isinstance(raw, dict):
        raise SnapshotError(f"{path}: {where}: not an object")
    k = raw.get("kind") or implied
    if k not in KINDS:
        log.warning("%s: skipping %s (fastdns reads Service, EndpointSlice, "
                    "Namespace, Pod)", path, describe(str(k or "object without kind"), raw))
        return None
    return decode_object(k, raw, where=path, slim=slim)


class SnapshotSource:
    """A cluster read from a file; :meth:`poll` re-reads it when it changes."""

    def __init__(self, path: str, labels: str | None = None,
                 slim: Compactor | None = None, namespace_labels: str | None = None) -> None:
        self.path = path
        self.labels = labels
        self.namespace_labels = namespace_labels
        self.slim = slim or compact
        self.index: ClusterIndex | None = None
        self._sig: tuple[Any, ...] | None = None

    def _signature(self) -> tuple[Any, ...]:
        try:
            st = os.stat(self.path)
            lst = os.lstat(self.path)
        except OSError as e:
            return ("missing", e.errno)
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, lst.st_ino, lst.st_mtime_ns)

    def _objects(self) -> Iterator[Any]:
        """The file's objects; kubectl output without Namespace objects implies
        the namespaces its objects live in (yielded last)."""
        names: set[str] = set()
        has_namespaces = False
        for o in iter_objects(self.path, self.slim):
            if isinstance(o, Namespace):
                has_namespaces = True
            elif not has_namespaces and o.metadata.namespace:
                names.add(o.metadata.namespace)
            yield o
        if not has_namespaces and names:
            log.info("%s: no Namespace objects; implying %s", self.path, ", ".join(sorted(names)))
            for n in sorted(names):
                yield Namespace(metadata=Meta(name=n))

    def load(self) -> ClusterIndex:
        """Read the file now; return the new index (also kept as :attr:`index`)."""
        sig = self._signature()
        self.index = ClusterIndex.from_objects(self._objects(), self.labels,
                                               self.namespace_labels)
        self._sig = sig
        return self.index

    def changed(self) -> bool:
        """Whether the file (or the symlink to it) differs from the last read."""
        return self._signature() != self._sig

    def poll(self, against: ClusterIndex) -> list[Event] | None:
        """If the file changed, the events that turn ``against`` into its state
        (not applied); None if it did not change.

        The file is streamed: objects equal to ``against``'s are dropped as
        they are read, so a re-read holds only what changed.  A broken file is
        logged (file, object, field), gives None (the last good state stays)
        and is not re-read until it changes again.
        """
        if not self.changed():
            return None
        sig = self._signature()
        try:
            events = against.events_to(self._objects())
        except SnapshotError as e:
            log.error("kubernetes snapshot: %s (keeping the last good state)", e)
            return None
        finally:
            self._sig = sig
        return events


# -- live API ---------------------------------------------------------------------

_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def make_api_client(conf: Any) -> Any:
    """A ``kubernetes.client.ApiClient`` as CoreDNS would connect.

    ``kubeconfig FILE [CONTEXT]`` wins, then ``endpoint URL`` (with ``tls``),
    else the in-cluster service account.  Raises :class:`KubernetesError`
    saying what is missing.
    """
    from kubernetes import client, config

    if conf.kubeconfig:
        if not os.path.exists(conf.kubeconfig):
            raise KubernetesError(f"kubeconfig {conf.kubeconfig}: file not found")
        try:
            return config.new_client_from_config(config_file=conf.kubeconfig,
                                                 context=conf.kubeconfig_context)
        except Exception as e:  # the client raises ConfigException, KeyError, yaml errors
            raise KubernetesError(f"kubeconfig {conf.kubeconfig}: {e}") from None
    cfg = client.Configuration()
    if conf.endpoint:
        cfg.host = conf.endpoint.rstrip("/")
        tls = getattr(conf, "tls", None)
        if tls:
            cfg.cert_file, cfg.key_file, cfg.ssl_ca_cert = tls
        return client.ApiClient(cfg)
    missing = [v for v in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
               if not os.environ.get(v)]
    if missing or not os.path.exists(_TOKEN):
        what = (f"{' and '.join(missing)} not set" if missing else f"no token at {_TOKEN}")
        raise KubernetesError("kubernetes: no kubeconfig and no endpoint configured, and not "
                              f"running in a cluster ({what}); set `kubeconfig FILE`, "
                              "`endpoint URL` or `snapshot FILE`")
    try:
        config.load_incluster_config(client_configuration=cfg)
    except Exception as e:
        raise KubernetesError(f"kubernetes: in-cluster config: {e}") from None
    return client.ApiClient(cfg)


class _ListMeta(msgspec.Struct, frozen=True):
    resourceVersion: str = ""
    cont: str = msgspec.field(default="", name="continue")


class _RawList(msgspec.Struct):
    metadata: _ListMeta = _ListMeta()
    items: list[msgspec.Raw] | None = None


class _RawEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _Status(msgspec.Struct):
    code: int = 0
    reason: str = ""
    message: str = ""


class _Bookmark(msgspec.Struct):
    metadata: _ListMeta = _ListMeta()


class _Gone(Exception):
    """The resourceVersion expired (410): re-list."""


_DECODERS = {k: msgspec.json.Decoder(t) for k, t in KINDS.items()}
#: Collection paths of the watched kinds (all namespaces).
API_PATHS = {
    "Service": "/api/v1/services",
    "EndpointSlice": "/apis/discovery.k8s.io/v1/endpointslices",
    "Namespace": "/api/v1/namespaces",
    "Pod": "/api/v1/pods",
}
LIST_PAGE = 500                 # objects per list request (client-go's default page)
_LIST_DECODER = msgspec.json.Decoder(_RawList)
_EVENT_DECODER = msgspec.json.Decoder(_RawEvent)


class WatchSource:
    """List + watch the API in threads; compile; call ``on_delta`` for each change.

    ``synced`` turns True once every watched kind has been listed; the first
    Delta then carries the whole compiled state.  After that each watch event
    (or a re-list after ``410 Gone``, diffed against the old state) gives one
    Delta.  While the API is unreachable the last state stays.
    """

    def __init__(self, conf: Any, on_delta: OnDelta, *, compiler: ZoneCompiler | None = None,
                 backoff: tuple[float, float] = (0.5, 30.0), watch_timeout: int = 300,
                 api_client: Any = None) -> None:
        self.conf = conf
        self.on_delta = on_delta
        self.compiler = compiler or ZoneCompiler(conf)
        self.backoff = backoff
        self.watch_timeout = watch_timeout
        self.kinds = ["Namespace", "Service"]
        if not conf.noendpoints:
            self.kinds.append("EndpointSlice")
        if conf.pods == "verified":
            self.kinds.append("Pod")
        self._api = api_client if api_client is not None else make_api_client(conf)
        self.index = ClusterIndex(getattr(conf, "labels", None),
                                  getattr(conf, "namespace_labels", None))
        self.slim = Compactor.for_conf(conf)
        self.synced = False
        self.resource_versions: dict[str, str] = {}
        self.relists: dict[str, int] = {k: 0 for k in self.kinds}
        self._listed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: dict[str, Any] = {}
        #: called under the lock after each applied change: the events (a list), or
        #: None once synced (the whole index); a second consumer (k8s_external) reads it
        self.on_change: Callable[[list[Event] | None], None] | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start one list/watch thread per kind."""
        for kind in self.kinds:
            t = threading.Thread(target=self._run, args=(kind,), daemon=True,
                                 name=f"k8s-watch-{kind}")
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching (interrupts open streams) and join the threads."""
        self._stop.set()
        for resp in list(self._responses.values()):
            _close(resp)
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        try:
            self._api.close()
        except Exception:  # pragma: no cover - best effort
            pass

    def wait_synced(self, timeout: float) -> bool:
        """Block until synced (or timeout); returns :attr:`synced`."""
        deadline = threading.Event()
        waited = 0.0
        while not self.synced and waited < timeout and not self._stop.is_set():
            deadline.wait(0.02)
            waited += 0.02
        return self.synced

    # -- requests -----------------------------------------------------------------
    def _get(self, kind: str, query: list[tuple[str, Any]], timeout: Any) -> Any:
        """GET the collection of ``kind`` with ``query``: the unread urllib3 response.

        The official client supplies the configuration, auth and transport
        (``param_serialize`` / ``call_api``); its typed API classes are not
        used: they would import and build ~250 model classes (+21 MB) to
        return objects fastdns decodes itself.  A non-2xx status raises the
        client's ``ApiException``.
        """
        from kubernetes.client.exceptions import ApiException

        if kind in ("Service", "EndpointSlice", "Pod") and getattr(self.conf, "labels", None):
            query.append(("labelSelector", self.conf.labels))
        if kind == "Namespace" and getattr(self.conf, "namespace_labels", None):
            query.append(("labelSelector", self.conf.namespace_labels))
        if kind == "Pod":
            query.append(("fieldSelector", "status.phase!=Succeeded,status.phase!=Failed,"
                                           "status.phase!=Unknown"))
        api = self._api
        method, url, headers, _, _ = api.param_serialize(
            "GET", API_PATHS[kind], query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        resp = api.call_api(method, url, headers, _request_timeout=timeout)
        if not 200 <= resp.status <= 299:
            resp.read()
            raise ApiException.from_response(http_resp=resp, body=None, data=None)
        return resp.response

    def _list(self, kind: str) -> tuple[list[Any], str]:
        """List every object of ``kind`` in pages of :data:`LIST_PAGE` (as client-go's
        reflector does: no response holds the whole cluster); a continue token
        that expired (410) makes the caller list again from the start."""
        dec = _DECODERS[kind]
        objs: list[Any] = []
        cont = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", LIST_PAGE)]
            if cont:
                query.append(("continue", cont))
            resp = self._get(kind, query, (10, 60))
            try:
                data = resp.data
            finally:
                _close(resp)
            lst = _LIST_DECODER.decode(data)
            del data
            for raw in lst.items or ():
                try:
                    objs.append(self.slim(dec.decode(raw)))
                except msgspec.ValidationError as e:
                    log.error("kubernetes: skipping a %s from the list: %s", kind, e)
            cont = lst.metadata.cont
            if not cont:
                return objs, lst.metadata.resourceVersion

    def _watch(self, kind: str, rv: str) -> None:
        resp = self._get(kind, [("watch", "true"), ("resourceVersion", rv),
                                ("allowWatchBookmarks", "true"),
                                ("timeoutSeconds", self.watch_timeout)],
                         (10, self.watch_timeout + 30))
        self._responses[kind] = resp
        try:
            if self._stop.is_set():        # stop() ran before this stream was registered
                return
            buf = b""
            for chunk in resp.stream(65536, decode_content=True):
                if self._stop.is_set():
                    return
                buf += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._on_line(kind, line)
        finally:
            self._responses.pop(kind, None)
            _close(resp)

    def _on_line(self, kind: str, line: bytes) -> None:
        try:
            ev = _EVENT_DECODER.decode(line)
        except msgspec.DecodeError as e:
            log.error("kubernetes: bad %s watch event: %s", kind, e)
            return
        if ev.type == "ERROR":
            st = msgspec.json.decode(ev.object, type=_Status)
            if st.code == 410:
                raise _Gone(st.message)
            raise KubernetesError(f"{kind} watch error {st.code} {st.reason}: {st.message}")
        if ev.type == "BOOKMARK":
            rv = msgspec.json.decode(ev.object, type=_Bookmark).metadata.resourceVersion
            if rv:
                self.resource_versions[kind] = rv
            return
        if ev.type not in (ADDED, MODIFIED, DELETED):
            log.warning("kubernetes: unknown %s watch event type %r", kind, ev.type)
            return
        try:
            obj = _DECODERS[kind].decode(ev.object)
        except msgspec.ValidationError as e:
            log.error("kubernetes: skipping a %s %s event: %s", kind, ev.type, e)
            return
        rv = obj.metadata.resourceVersion
        obj = self.slim(obj)           # drops the resourceVersion, among others
        with self._lock:
            if rv:
                self.resource_versions[kind] = rv
            event = Event(ev.type, obj)
            if self.synced:
                delta = self.compiler.apply(event)
                if delta:
                    self.on_delta(delta)
                if self.on_change is not None:
                    self.on_change([event])
            else:
                self.index.apply(event)

    def _on_list(self, kind: str, objs: list[Any], rv: str) -> None:
        with self._lock:
            self.resource_versions[kind] = rv
            if self.synced:
                events = self.index.replace_events(kind, objs)
                delta = self.compiler.apply_many(events)
                if delta:
                    self.on_delta(delta)
                if self.on_change is not None and events:
                    self.on_change(events)
                return
            for e in self.index.replace_events(kind, objs):
                self.index.apply(e)
            self._listed.add(kind)
            if self._listed.issuperset(self.kinds):
                answers = self.compiler.full(self.index)
                self.synced = True
                log.info("kubernetes: synced (%d objects, %d names)", len(self.index), len(answers))
                self.on_delta(self.compiler.full_delta())
                if self.on_change is not None:
                    self.on_change(None)

    def _run(self, kind: str) -> None:
        delay = self.backoff[0]
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    objs, rv = self._list(kind)
                    self._on_list(kind, objs, rv)
                    delay = self.backoff[0]
                self._watch(kind, self.resource_versions.get(kind, rv))
                rv = self.resource_versions.get(kind, rv)
                delay = self.backoff[0]
                continue  # server closed the watch (timeout): watch again from rv
            except _Gone as e:
                log.info("kubernetes: %s watch expired (410 Gone: %s); re-listing", kind, e)
                self.relists[kind] += 1
                rv = None
                continue
            except Exception as e:  # API errors, dropped connections, timeouts
                if self._stop.is_set():
                    return
                status = getattr(e, "status", None)
                if status == 410:
                    log.info("kubernetes: %s watch expired (410 Gone); re-listing", kind)
                    self.relists[kind] += 1
                    rv = None
                    continue
                log.warning("kubernetes: %s list/watch failed (%s: %s); retrying in %.1fs",
                            kind, type(e).__name__, str(e).splitlines()[0] if str(e) else "",
                            delay)
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])


def _close(resp: Any) -> None:
    for name in ("shutdown", "close", "release_conn"):
        fn = getattr(resp, name, None)
        if fn is not None:
            try:
                fn()
            except Exception:  # noqa: S110 - best effort on teardown
                pass
