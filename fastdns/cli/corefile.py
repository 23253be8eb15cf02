"""The Corefile a command works on: ``--conf``/FILE, the demo, node-cache's placeholders.

``fastdns serve`` and ``fastdns check-config`` read a Corefile the same way,
so the NodeLocalDNS addon's ConfigMap (``__PILLAR__…__`` placeholders) can
be checked exactly as it will be served.
"""

from __future__ import annotations

import argparse
import os

from fastdns import demo
from fastdns.config.parser import read_config_text
from fastdns.errors import ConfigError

__all__ = ["add_placeholder_arguments", "fill_placeholders", "load_corefile"]


def add_placeholder_arguments(group: argparse._ActionsContainer) -> None:
    """node-cache's flags that fill the addon's placeholders (same names, same meaning)."""
    group.add_argument("--localip", metavar="IP[,IP]", default=None,
                       help="addresses to fill __PILLAR__LOCAL__DNS__ (and bind), "
                            "e.g. 169.254.20.10,10.96.0.10")
    group.add_argument("--dns-server", metavar="IP", default=None,
                       help="kube-dns service IP for __PILLAR__DNS__SERVER__")
    group.add_argument("--cluster-dns", metavar="IP", default=None,
                       help="cluster DNS upstream for __PILLAR__CLUSTER__DNS__ "
                            "(default: $KUBE_DNS_UPSTREAM_SERVICE_HOST)")
    group.add_argument("--upstream-servers", metavar="IP[,IP]", default=None,
                       help="upstreams for __PILLAR__UPSTREAM__SERVERS__ (default /etc/resolv.conf)")
    group.add_argument("--dns-domain", metavar="DOMAIN", default="cluster.local",
                       help="cluster domain for __PILLAR__DNS__DOMAIN__ (default cluster.local)")


def load_corefile(path: str | None, port: int | None,
                  args: argparse.Namespace) -> tuple[str, str, int, bool]:
    """(text, filename, default port, is_demo) of the Corefile at ``path`` (None: the demo).

    Placeholders are filled from ``args`` (see :func:`add_placeholder_arguments`).
    """
    if path is None:
        demo_path = demo.corefile_path()
        return demo_path.read_text(), str(demo_path), port or demo.PORT, True
    text = read_config_text(path)
    if "__PILLAR__" in text:
        text = fill_placeholders(text, args, str(path))
    return text, str(path), port or 53, False


def fill_placeholders(text: str, args: argparse.Namespace, filename: str) -> str:
    """NodeLocalDNS's ConfigMap: fill node-cache's placeholders from the flags."""
    from fastdns.config.nodelocal import fill_nodelocal_placeholders

    if not args.localip:
        raise ConfigError("the Corefile has __PILLAR__ placeholders: give --localip "
                          "(and --cluster-dns / --dns-server) as for node-cache", filename)
    cluster_dns = args.cluster_dns or os.environ.get("KUBE_DNS_UPSTREAM_SERVICE_HOST")
    if not cluster_dns and "__PILLAR__CLUSTER__DNS__" in text:
        raise ConfigError("__PILLAR__CLUSTER__DNS__ needs --cluster-dns "
                          "(or $KUBE_DNS_UPSTREAM_SERVICE_HOST)", filename)
    upstreams = args.upstream_servers.replace(",", " ") if args.upstream_servers else None
    out = fill_nodelocal_placeholders(text, args.localip, args.dns_server or "",
                                      cluster_dns or "", upstreams, args.dns_domain)
    if "__PILLAR__" in out:
        raise ConfigError("a __PILLAR__ placeholder is left that no flag fills", filename)
    return out
