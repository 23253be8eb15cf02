"""`fastdns serve`: options and entry point (the coordinator does the work)."""

from __future__ import annotations

import argparse
import sys

from fastdns.errors import FastDNSError

__all__ = ["add_arguments", "serve_main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fastdns serve`` (node-cache's flags keep their meaning)."""
    p.add_argument("--conf", metavar="FILE", default=None,
                   help="Corefile to serve (default: the bundled demo on 127.0.0.1:5353)")
    p.add_argument("--workers", metavar="N", type=int, default=None,
                   help="worker processes (default: one per available core)")
    p.add_argument("--port", metavar="N", type=int, default=None,
                   help="port for server blocks that name none (default 53; demo 5353)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="coordinator log level (default info)")
    nl = p.add_argument_group("node-local cache (as node-cache)")
    nl.add_argument("--localip", metavar="IP[,IP]", default=None,
                    help="addresses to fill __PILLAR__LOCAL__DNS__ (and bind), e.g. 169.254.20.10,10.96.0.10")
    nl.add_argument("--dns-server", metavar="IP", default=None,
                    help="kube-dns service IP for __PILLAR__DNS__SERVER__")
    nl.add_argument("--cluster-dns", metavar="IP", default=None,
                    help="cluster DNS upstream for __PILLAR__CLUSTER__DNS__ "
                         "(default: $KUBE_DNS_UPSTREAM_SERVICE_HOST)")
    nl.add_argument("--upstream-servers", metavar="IP[,IP]", default=None,
                    help="upstreams for __PILLAR__UPSTREAM__SERVERS__ (default /etc/resolv.conf)")
    nl.add_argument("--dns-domain", metavar="DOMAIN", default="cluster.local",
                    help="cluster domain for __PILLAR__DNS__DOMAIN__ (default cluster.local)")
    nl.add_argument("--setup-interface", action="store_true",
                    help="create the dummy interface carrying --localip (needs CAP_NET_ADMIN)")
    nl.add_argument("--interface-name", default="nodelocaldns",
                    help="name of that interface (default nodelocaldns)")
    nl.add_argument("--setup-iptables", action="store_true",
                    help="add node-cache's NOTRACK/ACCEPT rules for --localip (needs CAP_NET_ADMIN)")
    nl.add_argument("--sync-interval", metavar="SECONDS", type=float, default=60.0,
                    help="with --setup-iptables: put back missing rules this often, as "
                         "node-cache's -syncinterval (default 60; 0: never)")
    nl.add_argument("--skip-teardown", action="store_true",
                    help="leave the interface and iptables rules in place on exit")


def serve_main(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit code."""
    from fastdns.coordinator.main import run

    try:
        return run(args)
    except FastDNSError as exc:
        print(f"fastdns: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0

