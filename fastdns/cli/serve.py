"""`fastdns serve`: options and entry point (the coordinator does the work)."""

from __future__ import annotations

import argparse
import sys

from fastdns.cli.corefile import add_placeholder_arguments
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
    add_placeholder_arguments(nl)
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

