"""``k8s_external [ZONE...] { apex APEX; ttl TTL; headless; fallthrough [ZONE...] }``."""

from __future__ import annotations

from dataclasses import dataclass

from fastdns.config.dispenser import Dispenser, no_args, parse_fallthrough, parse_int

__all__ = ["K8sExternalConf", "parse", "ONCE", "DEFAULT_APEX", "DEFAULT_TTL"]

# CoreDNS registers one External handler per server block: a second line would add a
# second handler that never sees a query; fastdns refuses it.
ONCE = True

DEFAULT_APEX = "dns"
DEFAULT_TTL = 5


@dataclass(frozen=True)
class K8sExternalConf:
    """The zones k8s_external is authoritative for and its properties (CoreDNS's defaults)."""

    zones: tuple[str, ...] = (".",)
    apex: str = DEFAULT_APEX
    ttl: int = DEFAULT_TTL
    headless: bool = False
    fallthrough: tuple[str, ...] | None = None


def parse(d: Dispenser) -> K8sExternalConf:
    """Parse one ``k8s_external`` directive (CoreDNS's plugin/k8s_external/setup.go)."""
    kw: dict[str, object] = {"zones": d.zones_or_server(d.args)}
    for sub in d.block():
        name, a = sub.name.text, sub.args
        if name == "ttl":
            if not a:
                raise sub.name.error("wrong argument count or unexpected line ending after 'ttl'")
            if len(a) > 1:
                raise a[1].error("ttl takes one value, in seconds")
            kw["ttl"] = parse_int(a[0], what="ttl", minimum=0, maximum=3600)
        elif name == "apex":
            if not a:
                raise sub.name.error("wrong argument count or unexpected line ending after 'apex'")
            if len(a) > 1:
                raise a[1].error("apex takes one name")
            label = a[0].text.strip(".").lower()
            if not label or "." in label or len(label) > 63:
                raise a[0].error(f"invalid apex {a[0].text!r}: must be one DNS label "
                                 "(fastdns refuses names CoreDNS would make unreachable)")
            kw["apex"] = label
        elif name == "headless":
            no_args(sub)
            kw["headless"] = True
        elif name == "fallthrough":
            kw["fallthrough"] = parse_fallthrough(a)
        else:
            raise d.unknown(sub)
    return K8sExternalConf(**kw)  # type: ignore[arg-type]
