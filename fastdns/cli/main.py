"""The ``fastdns`` command: ``fastdns check-config FILE`` and ``fastdns serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fastdns._build import missing_extension
from fastdns._version import __version__
from fastdns.errors import FastDNSError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so ``serve`` options can be listed in docs)."""
    parser = argparse.ArgumentParser(
        prog="fastdns", description="A fast DNS server for Kubernetes, configured by a Corefile.")
    parser.add_argument("--version", action="version", version=f"fastdns {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="parse a Corefile and explain the plan")
    check.add_argument("file", metavar="FILE", help="the Corefile to check")
    check.add_argument("--port", type=int, default=53,
                       help="default port for server blocks without one (default 53)")
    from fastdns.cli.corefile import add_placeholder_arguments
    add_placeholder_arguments(check.add_argument_group(
        "node-local cache placeholders (as for serve)"))

    serve = sub.add_parser("serve", help="run the DNS server")
    from fastdns.cli.serve import add_arguments
    add_arguments(serve)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    from fastdns.cli.corefile import load_corefile
    from fastdns.config import parse
    try:
        text, filename, port, _ = load_corefile(args.file, args.port, args)
        plan = parse(text, filename=filename, default_port=port)
    except FastDNSError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    sys.stdout.write(plan.explain())
    try:
        from fastdns.routing import check_plan
        check_plan(plan)                  # what serve would refuse
    except FastDNSError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 bad input, 2 usage)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.command == "check-config":
            return _check_config(args)
        from fastdns.cli.serve import serve_main
        return int(serve_main(args) or 0)
    except ImportError as exc:
        why = missing_extension(exc)
        if why is None:
            raise
        print(f"fastdns: {why}", file=sys.stderr)
        return 1
