"""``kubernetes`` settings: CoreDNS's directives plus fastdns's ``snapshot FILE``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fastdns.config.dispenser import (
    Dispenser, expect_args, no_args, parse_duration, parse_fallthrough, parse_int,
)

__all__ = ["KubernetesConf", "parse", "ONCE", "POD_MODES"]

ONCE = True
POD_MODES = ("disabled", "insecure", "verified")
_SELECTOR = re.compile(r"^[\w./!=,()\s-]+$")
_REVERSE = (".in-addr.arpa.", ".ip6.arpa.")


def _is_reverse(zone: str) -> bool:
    return zone in ("in-addr.arpa.", "ip6.arpa.") or zone.endswith(_REVERSE)


@dataclass(frozen=True)
class KubernetesConf:
    """What the ``kubernetes`` directive says (CoreDNS defaults).

    ``zones`` are the authoritative zones (from the arguments, else the server
    block's); ``fallthrough`` is None (off) or the zones it applies to
    (``(".",)`` for all); ``namespaces`` empty means all namespaces.
    """

    zones: tuple[str, ...] = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None
    kubeconfig: str | None = None
    kubeconfig_context: str | None = None
    namespaces: tuple[str, ...] = ()
    namespace_labels: str | None = None
    labels: str | None = None
    pods: str = "disabled"
    endpoint_pod_names: bool = False
    ttl: int = 5
    noendpoints: bool = False
    fallthrough: tuple[str, ...] | None = None
    ignore_empty_service: bool = False
    startup_timeout: float = 5.0
    apiserver_qps: float | None = None
    apiserver_burst: int | None = None
    apiserver_max_inflight: int | None = None
    snapshot: str | None = None

    @property
    def primary_zone(self) -> str:
        """The first non-reverse zone (the cluster domain)."""
        return next(z for z in self.zones if not _is_reverse(z))


def parse(d: Dispenser) -> KubernetesConf:
    """Parse one ``kubernetes [ZONES…] { … }`` directive."""
    zones = d.zones_or_server(d.args)
    if all(_is_reverse(z) for z in zones):
        raise d.error("kubernetes: a non-reverse zone name must be used (e.g. cluster.local)")
    kw: dict[str, object] = {"zones": zones}
    for sub in d.block():
        name, args = sub.name.text, sub.args
        if name in ("endpoint_pod_names", "noendpoints"):
            no_args(sub)
            kw[name] = True
        elif name == "pods":
            expect_args(sub.name, args, 1, 1, "pods disabled|insecure|verified")
            if args[0].text not in POD_MODES:
                raise args[0].error(f"wrong value for pods: {args[0].text!r}, must be one of: "
                                    "disabled, verified, insecure")
            kw["pods"] = args[0].text
        elif name == "namespaces":
            expect_args(sub.name, args, 1, None, "namespaces NAMESPACE...")
            kw["namespaces"] = tuple(a.text for a in args)
        elif name == "endpoint":
            expect_args(sub.name, args, 1, None, "endpoint URL")
            kw["endpoint"] = args[0].text
        elif name == "tls":
            expect_args(sub.name, args, 3, 3, "tls CERT KEY CACERT")
            kw["tls"] = tuple(d.path(a) for a in args)
        elif name in ("labels", "namespace_labels"):
            expect_args(sub.name, args, 1, None, f"{name} EXPRESSION")
            selector = " ".join(a.text for a in args)
            if not _SELECTOR.match(selector):
                raise args[0].error(f"unable to parse {name} selector value: {selector!r}")
            kw[name] = selector
        elif name == "fallthrough":
            kw["fallthrough"] = parse_fallthrough(args)
        elif name == "ttl":
            expect_args(sub.name, args, 1, 1, "ttl SECONDS")
            kw["ttl"] = parse_int(args[0], what="ttl", minimum=0, maximum=3600)
        elif name == "ignore":
            expect_args(sub.name, args, 1, 1, "ignore empty_service")
            if args[0].text != "empty_service":
                raise args[0].error(f"unable to parse ignore value: {args[0].text!r}")
            kw["ignore_empty_service"] = True
        elif name == "kubeconfig":
            expect_args(sub.name, args, 1, 2, "kubeconfig KUBECONFIG [CONTEXT]")
            kw["kubeconfig"] = d.path(args[0])
            kw["kubeconfig_context"] = args[1].text if len(args) == 2 else None
        elif name == "startup_timeout":
            expect_args(sub.name, args, 1, 1, "startup_timeout DURATION")
            kw["startup_timeout"] = parse_duration(args[0], what="startup_timeout")
        elif name == "apiserver_qps":
            expect_args(sub.name, args, 1, 1, "apiserver_qps QPS")
            try:
                qps = float(args[0].text)
            except ValueError:
                raise args[0].error(f"invalid apiserver_qps {args[0].text!r}") from None
            if qps < 0:
                raise args[0].error("apiserver_qps must be >= 0")
            kw["apiserver_qps"] = qps
        elif name in ("apiserver_burst", "apiserver_max_inflight"):
            expect_args(sub.name, args, 1, 1, f"{name} N")
            kw[name] = parse_int(args[0], what=name, minimum=0)
        elif name == "snapshot":
            expect_args(sub.name, args, 1, 1, "snapshot FILE")
            path = d.path(args[0])
            if not os.path.exists(path):
                raise args[0].error(f"snapshot file not found: {args[0].text}")
            kw["snapshot"] = path
        elif name in ("multicluster", "zonal"):
            raise sub.name.error(f"kubernetes: {name!r} is not supported by fastdns")
        else:
            raise d.unknown(sub)
    if kw.get("namespaces") and kw.get("namespace_labels"):
        raise d.error("namespaces and namespace_labels cannot both be set")
    return KubernetesConf(**kw)  # type: ignore[arg-type]
