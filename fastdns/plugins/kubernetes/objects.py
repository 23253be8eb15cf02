"""Slim typed records of the Kubernetes objects DNS needs.

Decoded straight from the API's JSON (``msgspec.json``) or from YAML/JSON
dicts (``msgspec.convert``): only the fields declared here are read, everything
else in the object is skipped, so a 50k-endpoint cluster costs a few hundred
bytes per object instead of the official client's model objects.

Every record is a frozen ``msgspec.Struct`` (hashable, comparable): two
versions of an object compare equal when nothing DNS cares about changed.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from fastdns.errors import SnapshotError

__all__ = [
    "Meta", "ServicePort", "ServiceSpec", "Service", "EndpointConditions", "TargetRef",
    "Endpoint", "EndpointPort", "EndpointSlice", "Namespace", "PodStatus", "Pod",
    "KINDS", "SERVICE_NAME_LABEL", "decode_object", "object_key", "describe",
]

#: The label an EndpointSlice carries naming its Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class Meta(msgspec.Struct, frozen=True, gc=False):
    """``metadata``: name, namespace, resourceVersion, labels, deletionTimestamp."""

    name: str
    namespace: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] | None = None
    deletionTimestamp: Any = None


class ServicePort(msgspec.Struct, frozen=True, gc=False):
    """One ``spec.ports[]`` entry."""

    port: int
    name: str | None = None
    protocol: str | None = "TCP"


class ServiceSpec(msgspec.Struct, frozen=True, gc=False):
    """The fields of ``spec`` that change DNS answers."""

    type: str = "ClusterIP"
    clusterIP: str | None = None
    clusterIPs: tuple[str, ...] | None = None
    ports: tuple[ServicePort, ...] | None = None
    externalName: str | None = None
    publishNotReadyAddresses: bool = False


class Service(msgspec.Struct, frozen=True, gc=False):
    """A core/v1 Service."""

    metadata: Meta
    spec: ServiceSpec

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    @property
    def cluster_ips(self) -> tuple[str, ...]:
        """``clusterIPs``, else ``(clusterIP,)`` as CoreDNS reads them."""
        if self.spec.clusterIPs:
            return self.spec.clusterIPs
        return (self.spec.clusterIP or "",)

    @property
    def headless(self) -> bool:
        """A Service whose first cluster IP is ``None``."""
        return self.cluster_ips[0] == "None"

    @property
    def external(self) -> bool:
        """An ExternalName Service."""
        return self.spec.type == "ExternalName"


class EndpointConditions(msgspec.Struct, frozen=True, gc=False):
    """``endpoints[].conditions``; an absent ``ready`` means ready."""

    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class TargetRef(msgspec.Struct, frozen=True, gc=False):
    """``endpoints[].targetRef`` (usually the Pod)."""

    name: str = ""
    kind: str = ""
    namespace: str = ""


class Endpoint(msgspec.Struct, frozen=True, gc=False):
    """One ``endpoints[]`` entry of an EndpointSlice."""

    addresses: tuple[str, ...]
    conditions: EndpointConditions = EndpointConditions()
    hostname: str | None = None
    targetRef: TargetRef | None = None

    @property
    def ready(self) -> bool:
        """``conditions.ready`` (nil counts as ready, as CoreDNS reads it)."""
        return self.conditions.ready is not False


class EndpointPort(msgspec.Struct, frozen=True, gc=False):
    """One ``ports[]`` entry of an EndpointSlice (all fields optional)."""

    name: str | None = None
    port: int | None = None
    protocol: str | None = None


class EndpointSlice(msgspec.Struct, frozen=True, gc=False):
    """A discovery.k8s.io/v1 EndpointSlice."""

    metadata: Meta
    addressType: str = "IPv4"
    endpoints: tuple[Endpoint, ...] | None = None
    ports: tuple[EndpointPort, ...] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    @property
    def service_key(self) -> tuple[str, str] | None:
        """``(namespace, service name)`` from the service-name label, or None."""
        labels = self.metadata.labels or {}
        name = labels.get(SERVICE_NAME_LABEL)
        return (self.metadata.namespace, name) if name else None


class Namespace(msgspec.Struct, frozen=True, gc=False):
    """A core/v1 Namespace."""

    metadata: Meta

    @property
    def key(self) -> str:
        """The namespace name."""
        return self.metadata.name


class PodStatus(msgspec.Struct, frozen=True, gc=False):
    """``status``: phase and primary IP."""

    podIP: str | None = None
    phase: str | None = None


class Pod(msgspec.Struct, frozen=True, gc=False):
    """A core/v1 Pod (read only with ``pods verified``)."""

    metadata: Meta
    status: PodStatus = PodStatus()

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    @property
    def live_ip(self) -> str | None:
        """The pod IP if the pod counts for DNS (running, not terminating)."""
        if self.metadata.deletionTimestamp or not self.status.podIP:
            return None
        if self.status.phase in ("Succeeded", "Failed", "Unknown"):
            return None
        return self.status.podIP


#: kind name → record type, for the kinds fastdns reads.
KINDS: dict[str, type] = {
    "Service": Service,
    "EndpointSlice": EndpointSlice,
    "Namespace": Namespace,
    "Pod": Pod,
}

K8sObject = Service | EndpointSlice | Namespace | Pod


def object_key(obj: K8sObject) -> Any:
    """The store key of an object: ``(namespace, name)``, or the name for a Namespace."""
    return obj.key


def describe(kind: str, raw: Any) -> str:
    """``Kind namespace/name`` of a raw dict, as far as it can be read (for errors)."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if not isinstance(meta, dict):
        return f"{kind} (no metadata)"
    name = meta.get("name", "?")
    ns = meta.get("namespace")
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


_CONDITIONS: dict[EndpointConditions, EndpointConditions] = {}


def compact(obj: Any) -> Any:
    """Share what repeats across a big cluster's endpoints (their few possible
    ``conditions``, targetRef kind and namespace strings); other objects as they are."""
    if not isinstance(obj, EndpointSlice) or not obj.endpoints:
        return obj
    eps = []
    for ep in obj.endpoints:
        cond = _CONDITIONS.setdefault(ep.conditions, ep.conditions)
        ref = ep.targetRef
        if ref is not None:
            ref = TargetRef(ref.name, sys.intern(ref.kind), sys.intern(ref.namespace))
        eps.append(msgspec.structs.replace(ep, conditions=cond, targetRef=ref))
    return msgspec.structs.replace(obj, endpoints=tuple(eps))


def decode_object(kind: str, raw: dict, where: str = "") -> K8sObject:
    """Convert one raw object dict of ``kind`` into its slim record.

    Raises :class:`SnapshotError` naming the object (kind, namespace/name)
    and the missing or wrong field.
    """
    typ = KINDS[kind]
    try:
        return compact(msgspec.convert(raw, type=typ, strict=False))
    except msgspec.ValidationError as e:
        prefix = f"{where}: " if where else ""
        raise SnapshotError(f"{prefix}{describe(kind, raw)}: {e}") from None
