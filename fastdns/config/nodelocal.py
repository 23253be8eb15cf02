"""Fill the NodeLocalDNS addon's Corefile placeholders as node-cache does.

The addon (``kubernetes/kubernetes: cluster/addons/dns/nodelocaldns``) ships a
Corefile with ``__PILLAR__…__`` placeholders. The administrator's ``sed``
fills ``__PILLAR__DNS__DOMAIN__``, ``__PILLAR__LOCAL__DNS__`` and
``__PILLAR__DNS__SERVER__``; node-cache then fills ``__PILLAR__CLUSTER__DNS__``
(the kube-dns-upstream service IP) and ``__PILLAR__UPSTREAM__SERVERS__`` (the
kube-dns ConfigMap's upstreamNameservers, else ``/etc/resolv.conf``; custom
upstreams are reached over UDP, so a ``force_tcp`` block around them is
replaced by a plain ``forward`` line).

Given the raw template, fastdns does the administrator's ``sed`` too, from
node-cache's ``-localip L,S`` list: ``__PILLAR__LOCAL__DNS__`` is the first
address (the link-local one, also in ``health L:8080``), and
``__PILLAR__DNS__SERVER__`` the kube-dns service IP (``--dns-server``, else
the rest of the list; empty in IPVS mode, where only L is bound).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["fill_nodelocal_placeholders", "PLACEHOLDERS"]

PLACEHOLDERS = ("__PILLAR__LOCAL__DNS__", "__PILLAR__DNS__SERVER__", "__PILLAR__CLUSTER__DNS__",
                "__PILLAR__UPSTREAM__SERVERS__", "__PILLAR__DNS__DOMAIN__")

_TCP_BLOCK = """
    forward . __PILLAR__UPSTREAM__SERVERS__ {
            force_tcp
    }
"""
_UDP_BLOCK = """
    forward . __PILLAR__UPSTREAM__SERVERS__
"""


def fill_nodelocal_placeholders(text: str, local_dns: str, dns_server: str | None,
                                cluster_dns: str,
                                upstream_servers: Sequence[str] | str | None = None,
                                dns_domain: str = "cluster.local") -> str:
    """Return ``text`` with node-cache's placeholders replaced.

    ``local_dns``: the node-local IP(s), comma or space separated (e.g.
    ``169.254.20.10`` or ``169.254.20.10,10.96.0.10``); ``dns_server``: the
    kube-dns service IP the node-local cache also binds (None/"": the rest of
    ``local_dns`` after its first address); ``cluster_dns``: where cluster
    names are forwarded; ``upstream_servers``: upstream IPs, or a resolv.conf
    path, or None/empty for ``/etc/resolv.conf``; ``dns_domain``: the cluster domain.
    """
    if isinstance(upstream_servers, str):
        upstream = upstream_servers.strip()
        custom = bool(upstream) and not upstream.startswith("/")
    else:
        upstream = " ".join(upstream_servers or ())
        custom = bool(upstream)
    if not upstream:
        upstream = "/etc/resolv.conf"
    if custom:
        udp = _UDP_BLOCK.replace("__PILLAR__UPSTREAM__SERVERS__", upstream)
        text = text.replace(_TCP_BLOCK, udp)
    text = text.replace("__PILLAR__UPSTREAM__SERVERS__", upstream)
    text = text.replace("__PILLAR__CLUSTER__DNS__", cluster_dns)
    text = text.replace("__PILLAR__DNS__DOMAIN__", dns_domain)
    ips = local_dns.replace(",", " ").split()
    local = ips[0] if ips else ""
    text = text.replace("__PILLAR__LOCAL__DNS__", local)
    server = (dns_server or "").strip() or " ".join(ips[1:])
    if server == local:
        server = ""
    text = text.replace(" __PILLAR__DNS__SERVER__", f" {server}" if server else "")
    return text.replace("__PILLAR__DNS__SERVER__", server)
