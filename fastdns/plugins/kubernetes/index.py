"""The object store both sources feed: Services, EndpointSlices, Namespaces, Pods.

Objects are kept by key with the secondary indexes the compiler needs
(slices of a Service, services of a Namespace, pods by IP).  Changes arrive
as :class:`Event` s; a full re-list or snapshot re-read is turned into the
events that lead from the old state to the new one (:meth:`ClusterIndex.diff`),
so the compiler always works incrementally and emits one atomic delta.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastdns.plugins.kubernetes.objects import EndpointSlice, K8sObject, Namespace, Pod, Service
from fastdns.plugins.kubernetes.selector import Selector, parse_selector

__all__ = ["Event", "ClusterIndex", "ADDED", "MODIFIED", "DELETED", "KIND_OF", "ALL_KINDS"]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

KIND_OF: dict[type, str] = {
    Service: "Service", EndpointSlice: "EndpointSlice", Namespace: "Namespace", Pod: "Pod",
}
ALL_KINDS = ("Namespace", "Service", "EndpointSlice", "Pod")


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ``type`` is ADDED, MODIFIED or DELETED; ``obj`` the (new or last) object."""

    type: str
    obj: K8sObject

    @property
    def kind(self) -> str:
        """``Service``, ``EndpointSlice``, ``Namespace`` or ``Pod``."""
        return KIND_OF[type(self.obj)]


class ClusterIndex:
    """Current cluster state, filtered by the ``labels`` selector.

    ``labels`` (CoreDNS's directive) applies to Services, EndpointSlices and
    Pods, ``namespace_labels`` to Namespaces (a Namespace that does not match
    is absent, so nothing in it is exposed); an object that stops matching is
    treated as deleted.
    """

    def __init__(self, labels: str | None = None, namespace_labels: str | None = None) -> None:
        self.labels = labels
        self.namespace_labels = namespace_labels
        self._match: Selector = parse_selector(labels)
        self._match_ns: Selector = parse_selector(namespace_labels)
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], EndpointSlice] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        #: (namespace, service) → its slices, in slice-name order (usually one)
        self.slices_by_service: dict[tuple[str, str], tuple[EndpointSlice, ...]] = {}
        #: pod IP → pod keys
        self.pods_by_ip: dict[str, set[tuple[str, str]]] = {}

    # -- reading ---------------------------------------------------------
    def store(self, kind: str) -> dict[Any, Any]:
        """The dict holding objects of ``kind``."""
        return {"Service": self.services, "EndpointSlice": self.slices,
                "Namespace": self.namespaces, "Pod": self.pods}[kind]

    def slices_of(self, key: tuple[str, str]) -> tuple[EndpointSlice, ...]:
        """The EndpointSlices of Service ``key``, in slice-name order."""
        return self.slices_by_service.get(key, ())

    def touched(self, obj: Any, old: Any, services: set[tuple[str, str]],
                namespaces: set[str]) -> None:
        """Add what a change to ``obj`` (``old``: what it replaced, from :meth:`apply`)
        makes stale: the Services whose answers it changes and, for a Namespace, the
        namespace and every Service in it."""
        if isinstance(obj, Service):
            services.add(obj.key)
        elif isinstance(obj, EndpointSlice):
            for o in (old, obj):
                sk = o.service_key if o is not None else None
                if sk is not None:
                    services.add(sk)
        elif isinstance(obj, Namespace):
            namespaces.add(obj.key)
            services.update((obj.key, n) for n in self.services_in(obj.key))

    def services_in(self, namespace: str) -> list[str]:
        """Names of the Services in ``namespace`` (a scan: namespaces change rarely)."""
        return [name for ns, name in self.services if ns == namespace]

    def pods_with_ip(self, ip: str) -> list[Pod]:
        """Pods whose live IP is ``ip``."""
        return [self.pods[k] for k in sorted(self.pods_by_ip.get(ip, ()))]

    def __len__(self) -> int:
        return len(self.services) + len(self.slices) + len(self.namespaces) + len(self.pods)

    # -- writing ---------------------------------------------------------
    def matches(self, obj: K8sObject) -> bool:
        """Whether ``obj`` passes its selector (``namespace_labels`` for a Namespace)."""
        if isinstance(obj, Namespace):
            return self._match_ns(obj.metadata.labels)
        return self._match(obj.metadata.labels)

    def apply(self, event: Event) -> K8sObject | None:
        """Apply one change; return the object it replaced or removed (or None)."""
        obj = event.obj
        if event.type != DELETED and not self.matches(obj):
            event = Event(DELETED, obj)
        store = self.store(event.kind)
        key = obj.key
        old = store.get(key)
        if event.type == DELETED:
            if old is None:
                return None
            del store[key]
            self._unlink(old)
            return old
        if old is not None:
            self._unlink(old)
        store[key] = obj
        self._link(obj)
        return old

    def _link(self, obj: K8sObject) -> None:
        if isinstance(obj, EndpointSlice):
            sk = obj.service_key
            if sk is not None:
                name = obj.metadata.name
                others = [s for s in self.slices_by_service.get(sk, ()) if s.metadata.name != name]
                self.slices_by_service[sk] = tuple(
                    sorted(others + [obj], key=lambda s: s.metadata.name))
        elif isinstance(obj, Pod):
            ip = obj.live_ip
            if ip:
                self.pods_by_ip.setdefault(ip, set()).add(obj.key)

    def _unlink(self, obj: K8sObject) -> None:
        if isinstance(obj, EndpointSlice):
            sk = obj.service_key
            cur = self.slices_by_service.get(sk, ()) if sk else ()
            rest = tuple(s for s in cur if s.metadata.name != obj.metadata.name)
            if rest:
                self.slices_by_service[sk] = rest  # type: ignore[index]
            elif cur:
                del self.slices_by_service[sk]  # type: ignore[arg-type]
        elif isinstance(obj, Pod):
            ip = obj.live_ip
            keys = self.pods_by_ip.get(ip) if ip else None
            if keys is not None:
                keys.discard(obj.key)
                if not keys:
                    del self.pods_by_ip[ip]  # type: ignore[index]

    # -- whole-state changes -----------------------------------------------
    def events_to(self, objects: Iterable[K8sObject],
                  kinds: Iterable[str] = ALL_KINDS) -> list[Event]:
        """The events that turn the stored objects of ``kinds`` into ``objects``
        (not applied); objects of other kinds are ignored.

        ``objects`` is consumed as a stream: one equal to the stored object is
        dropped at once, so diffing a re-read of a large cluster holds only what
        changed.  Objects the ``labels`` selector rejects count as absent; a
        key given twice ends with its last object, as in :meth:`from_objects`.
        """
        seen: dict[str, set[Any]] = {k: set() for k in kinds}
        events: list[Event] = []
        for o in objects:
            kind = KIND_OF[type(o)]
            keys = seen.get(kind)
            if keys is None or not self.matches(o):
                continue
            key = o.key
            old = self.store(kind).get(key)
            if old is None:
                events.append(Event(ADDED, o))
            elif old != o:
                events.append(Event(MODIFIED, o))
            else:
                key = old.key             # keep the stored object's strings, not the new one's
            keys.add(key)
        for kind, keys in seen.items():
            events.extend(Event(DELETED, old) for k, old in self.store(kind).items()
                          if k not in keys)
        return events

    def replace_events(self, kind: str, objects: Iterable[K8sObject]) -> list[Event]:
        """The events that turn the stored ``kind`` objects into ``objects`` (not applied)."""
        return self.events_to(objects, (kind,))

    def diff(self, other: ClusterIndex) -> list[Event]:
        """The events that turn this index into ``other`` (not applied)."""
        return self.events_to(o for kind in ALL_KINDS for o in other.store(kind).values())

    @classmethod
    def from_objects(cls, objects: Iterable[K8sObject], labels: str | None = None,
                     namespace_labels: str | None = None) -> ClusterIndex:
        """Build an index from objects (later duplicates replace earlier ones)."""
        idx = cls(labels, namespace_labels)
        for o in objects:
            idx.apply(Event(ADDED, o))
        return idx
