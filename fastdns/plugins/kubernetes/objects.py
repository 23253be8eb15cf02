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
    "Meta", "ServicePort", "ServiceSpec", "LoadBalancerIngress", "LoadBalancerStatus",
    "ServiceStatus", "Service", "EndpointConditions", "TargetRef",
    "Endpoint", "EndpointPort", "EndpointSlice", "Namespace", "PodStatus", "Pod",
    "KINDS", "SERVICE_NAME_LABEL", "Compactor", "compact", "decode_object", "object_key", "describe",
    "EndpointEntry", "pack_endpoints", "unpack_endpoints",
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
    externalIPs: tuple[str, ...] | None = None     # read by k8s_external


class LoadBalancerIngress(msgspec.Struct, frozen=True, gc=False):
    """One ``status.loadBalancer.ingress[]`` entry (an IP or a host name)."""

    ip: str | None = None
    hostname: str | None = None


class LoadBalancerStatus(msgspec.Struct, frozen=True, gc=False):
    """``status.loadBalancer``."""

    ingress: tuple[LoadBalancerIngress, ...] | None = None


class ServiceStatus(msgspec.Struct, frozen=True, gc=False):
    """The fields of ``status`` DNS reads (k8s_external: the load balancer's ingress)."""

    loadBalancer: LoadBalancerStatus = LoadBalancerStatus()


_NO_STATUS = ServiceStatus()


class Service(msgspec.Struct, frozen=True, gc=False):
    """A core/v1 Service."""

    metadata: Meta
    spec: ServiceSpec
    status: ServiceStatus = _NO_STATUS

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
    def external_ips(self) -> tuple[str, ...]:
        """``spec.externalIPs`` then each load balancer ingress's IP, else its host
        name, as CoreDNS's ``object.Service.ExternalIPs`` (empty entries dropped)."""
        out = list(self.spec.externalIPs or ())
        for ing in self.status.loadBalancer.ingress or ():
            if ing.ip or ing.hostname:
                out.append(ing.ip or ing.hostname)  # type: ignore[arg-type]
        return tuple(out)

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


#: What the compiler reads of one endpoint: (ready, addresses, hostname, targetRef name).
EndpointEntry = tuple[bool, tuple[str, ...], "str | None", "str | None"]

_READY, _HOST, _POD = 1, 2, 4


def pack_endpoints(endpoints: tuple[Endpoint, ...], pod_names: bool) -> bytes | None:
    """The endpoints as one ``bytes`` (~20 bytes each instead of ~150 as objects);
    None if one does not fit the format (then the objects are kept).

    Per endpoint: ``u8 flags`` (ready, has hostname, has pod name), ``u8 n``,
    ``n`` addresses, the hostname, the targetRef name (if ``pod_names``); each
    string as ``u8 length`` + UTF-8.
    """
    out = bytearray()
    for ep in endpoints:
        host = ep.hostname
        pod = ep.targetRef.name if pod_names and ep.targetRef is not None else None
        parts = [a.encode() for a in ep.addresses]
        flags = _READY if ep.ready else 0
        if host:
            flags |= _HOST
            parts.append(host.encode())
        if pod:
            flags |= _POD
            parts.append(pod.encode())
        if len(ep.addresses) > 255 or any(len(b) > 255 for b in parts):
            return None
        out += bytes((flags, len(ep.addresses)))
        for b in parts:
            out.append(len(b))
            out += b
    return bytes(out)


def unpack_endpoints(data: bytes) -> list[EndpointEntry]:
    """The entries :func:`pack_endpoints` wrote."""
    out: list[EndpointEntry] = []
    i, n = 0, len(data)
    while i < n:
        flags, count = data[i], data[i + 1]
        i += 2
        strs = []
        for _ in range(count + bool(flags & _HOST) + bool(flags & _POD)):
            ln = data[i]
            strs.append(data[i + 1:i + 1 + ln].decode())
            i += 1 + ln
        host = strs[count] if flags & _HOST else None
        pod = strs[-1] if flags & _POD else None
        out.append((bool(flags & _READY), tuple(strs[:count]), host, pod))
    return out


class EndpointSlice(msgspec.Struct, frozen=True, gc=False):
    """A discovery.k8s.io/v1 EndpointSlice.

    ``service`` and ``packed`` are not API fields (the JSON keys they are
    decoded from never occur): :class:`Compactor` copies the service-name
    label into ``service`` and packs ``endpoints`` into ``packed``
    (:func:`pack_endpoints`), so that neither the labels nor one object per
    endpoint need be kept.  Read endpoints with :meth:`entries`.
    """

    metadata: Meta
    addressType: str = "IPv4"
    endpoints: tuple[Endpoint, ...] | None = None
    ports: tuple[EndpointPort, ...] | None = None
    service: str | None = msgspec.field(default=None, name="fastdns.io/service")
    packed: bytes | None = msgspec.field(default=None, name="fastdns.io/endpoints")

    def entries(self) -> list[EndpointEntry]:
        """``(ready, addresses, hostname, targetRef name)`` per endpoint."""
        if self.packed is not None:
            return unpack_endpoints(self.packed)
        return [(ep.ready, ep.addresses, ep.hostname,
                 ep.targetRef.name if ep.targetRef is not None else None)
                for ep in self.endpoints or ()]

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    @property
    def service_key(self) -> tuple[str, str] | None:
        """``(namespace, service name)`` from the service-name label, or None."""
        name = self.service
        if name is None:
            name = (self.metadata.labels or {}).get(SERVICE_NAME_LABEL)
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


class Compactor:
    """Slims decoded objects for a large cluster's index (called on each one).

    Drops what the compiler never reads and shares what repeats:

    * ``resourceVersion`` (the watch reads it before compacting);
    * labels of Services and EndpointSlices except the keys ``label_keys``
      names (those of the ``labels`` selector; None keeps them all); an
      EndpointSlice's service-name label moves to its ``service`` field;
    * endpoints become one packed ``bytes`` per slice with only what the
      compiler reads (ready, addresses, hostname, and the targetRef name if
      ``pod_names``: ``endpoint_pod_names`` reads it);
    * equal port lists and namespace strings become one shared object (the
      cache is bounded: sharing only saves memory).

    Two objects compacted by the same Compactor compare equal when nothing
    DNS cares about changed, so a re-read with unrelated edits yields no event.
    """

    MAX_SHARED = 4096

    def __init__(self, label_keys: frozenset[str] | None = None, pod_names: bool = True) -> None:
        self.label_keys = label_keys
        self.pod_names = pod_names
        self._shared: dict[Any, Any] = {}

    @classmethod
    def for_conf(cls, conf: Any) -> Compactor:
        """The Compactor for a ``kubernetes`` block's configuration."""
        from fastdns.plugins.kubernetes.selector import selector_keys

        return cls(selector_keys(getattr(conf, "labels", None)),
                   bool(getattr(conf, "endpoint_pod_names", False)))

    def share(self, value: Any) -> Any:
        """One shared instance per equal (hashable) value."""
        if value is None:
            return None
        got = self._shared.get(value)
        if got is None:
            if len(self._shared) >= self.MAX_SHARED:
                self._shared.clear()
            self._shared[value] = got = value
        return got

    def _meta(self, meta: Meta, keep_labels: bool) -> Meta:
        labels = meta.labels
        if labels and not keep_labels:
            keys = self.label_keys
            if keys is not None:
                labels = {k: v for k, v in labels.items() if k in keys} or None
        return msgspec.structs.replace(meta, namespace=sys.intern(meta.namespace),
                                       resourceVersion="", labels=labels)

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, EndpointSlice):
            return self._slice(obj)
        if isinstance(obj, Service):
            spec = obj.spec
            ips = spec.clusterIPs
            ip = ips[0] if ips and ips[0] == spec.clusterIP else spec.clusterIP
            spec = msgspec.structs.replace(spec, clusterIP=ip, ports=self.share(spec.ports))
            status = obj.status if obj.status.loadBalancer.ingress else _NO_STATUS
            return Service(self._meta(obj.metadata, False), spec, status)
        if isinstance(obj, Pod):
            return msgspec.structs.replace(obj, metadata=self._meta(obj.metadata, False))
        if isinstance(obj, Namespace):
            return Namespace(self._meta(obj.metadata, True))
        return obj

    def _slice(self, obj: EndpointSlice) -> EndpointSlice:
        service = obj.service
        if service is None:
            service = (obj.metadata.labels or {}).get(SERVICE_NAME_LABEL)
        eps, packed = obj.endpoints, obj.packed
        if eps is not None:
            packed = pack_endpoints(eps, self.pod_names)
            if packed is not None:
                eps = None
            else:                           # does not fit the packed format: keep the objects
                eps = tuple(msgspec.structs.replace(ep, conditions=self.share(ep.conditions))
                            for ep in eps)
        meta = self._meta(obj.metadata, False)     # keeps the label only if the selector reads it
        return msgspec.structs.replace(obj, metadata=meta, endpoints=eps, packed=packed,
                                       addressType=sys.intern(obj.addressType),
                                       ports=self.share(obj.ports), service=service)


#: Keeps everything any configuration may read (for callers without a conf).
compact = Compactor()


def decode_object(kind: str, raw: dict, where: str = "",
                  slim: Compactor = compact) -> K8sObject:
    """Convert one raw object dict of ``kind`` into its slim record.

    Raises :class:`SnapshotError` naming the object (kind, namespace/name)
    and the missing or wrong field.
    """
    typ = KINDS[kind]
    try:
        return slim(msgspec.convert(raw, type=typ, strict=False))
    except msgspec.ValidationError as e:
        prefix = f"{where}: " if where else ""
        raise SnapshotError(f"{prefix}{describe(kind, raw)}: {e}") from None
