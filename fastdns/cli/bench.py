"""``fastdns-bench``: argument parsing only; the work is in :mod:`fastdns.bench`.

Commands::

    fastdns-bench run --server HOST:PORT [--tcp] (--queries FILE | --scenario k8s-pod --cluster FILE)
                      [--duration S] [--concurrency N | --rate QPS] [--procs P] [--timeout S]
                      [--json FILE]
    fastdns-bench cluster --services N --endpoints-per-service M [--headless-fraction F]
                          [--namespaces K] -o FILE [--queries FILE]
    fastdns-bench compare --target LABEL=HOST:PORT ... [--rounds R] [--plot FILE] (workload options)

With ``--json -`` stdout carries the JSON object only; the text summary (and
``compare``'s table) then go to stderr.  Bad input prints one
``fastdns-bench: ...`` line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import sys

from fastdns.errors import BenchError, FastDNSError


def _workload_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--queries", metavar="FILE", help="dnsperf-format query file (name type per line)")
    src.add_argument("--scenario", metavar="NAME", help="built-in scenario: k8s-pod")
    p.add_argument("--cluster", metavar="FILE", help="cluster snapshot for --scenario k8s-pod")
    p.add_argument("--lookups", type=int, default=10000, metavar="N",
                   help="distinct lookups the scenario generates (default 10000)")
    p.add_argument("--ndots", type=int, default=5, help="resolv.conf ndots for the scenario (default 5)")
    p.add_argument("--cluster-domain", default="cluster.local", help="cluster domain (default cluster.local)")
    p.add_argument("--a-only", action="store_true", help="scenario: ask A only (default A and AAAA in parallel)")
    p.add_argument("--edns", action="store_true", help="send EDNS0 (UDP size 1232) with each query")
    p.add_argument("--tcp", action="store_true",
                   help="DNS over TCP (RFC 7766): --connections connections per process (default 8), "
                        "queries pipelined on each, IDs matched per connection, a closed connection "
                        "reopened (its unanswered queries count as lost). The loop is C (send/recv, "
                        "poll); one process answered over 1M QPS from benchmarks/responder.c -t on "
                        "loopback (-c 200), so the server is the limit")
    p.add_argument("--duration", "-l", type=float, default=10.0, metavar="S", help="seconds of sending (default 10)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", "-c", type=int, default=100, metavar="N",
                      help="closed loop: lookups in flight (default 100)")
    mode.add_argument("--rate", "-Q", type=float, metavar="QPS",
                      help="open loop: lookups started per second, latency from the intended send time")
    p.add_argument("--procs", "-P", type=int, default=1, metavar="P", help="sending processes (default 1)")
    p.add_argument("--sockets", "--connections", dest="sockets", type=int, metavar="S",
                   help="UDP sockets, or TCP connections with --tcp, per process "
                        "(default: from the in-flight bound; TCP at least 8)")
    p.add_argument("--timeout", "-t", type=float, default=2.0, metavar="S",
                   help="a query unanswered after S seconds is lost; an answer up to 2*S after sending "
                        "is late (default 2)")
    p.add_argument("--no-probe", action="store_true", help="skip the probe query before the run")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-second lines")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every command."""
    ap = argparse.ArgumentParser(prog="fastdns-bench", description="DNS load generator and comparison tool")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="load one server")
    run.add_argument("--server", "-s", required=True, metavar="HOST:PORT", help="numeric address, port default 53")
    run.add_argument("--json", metavar="FILE", help="write the result as one JSON object ('-' = stdout)")
    _workload_args(run)
    cl = sub.add_parser("cluster", help="write a synthetic cluster snapshot and query file")
    cl.add_argument("--services", type=int, required=True)
    cl.add_argument("--endpoints-per-service", type=int, required=True)
    cl.add_argument("--headless-fraction", type=float, default=0.1)
    cl.add_argument("--namespaces", type=int, default=4)
    cl.add_argument("--cluster-domain", default="cluster.local")
    cl.add_argument("-o", "--output", required=True, metavar="FILE", help="snapshot (.yaml, or .json)")
    cl.add_argument("--queries", metavar="FILE", help="also write a matching dnsperf query file")
    cmp_ = sub.add_parser("compare", help="one workload against several servers, interleaved rounds")
    cmp_.add_argument("--target", action="append", required=True, metavar="LABEL=HOST:PORT")
    cmp_.add_argument("--rounds", type=int, default=3)
    cmp_.add_argument("--plot", metavar="FILE.png|svg", help="latency CDF and QPS chart (needs matplotlib)")
    cmp_.add_argument("--json", metavar="FILE", help="write rows and every round's result as JSON")
    _workload_args(cmp_)
    return ap


def _workload(a: argparse.Namespace):
    from fastdns.bench.queries import read_query_file, workload_from_queries
    from fastdns.bench.scenario import read_scenario
    if a.queries:
        if a.cluster:
            raise BenchError("--cluster goes with --scenario, not --queries")
        return workload_from_queries(read_query_file(a.queries), a.edns)
    if a.lookups < 1:
        raise BenchError("--lookups must be at least 1")
    return read_scenario(a.scenario, a.cluster, count=a.lookups, ndots=a.ndots,
                         domain=a.cluster_domain, qtypes=("A",) if a.a_only else ("A", "AAAA"),
                         edns=a.edns)


def _options(a: argparse.Namespace, server: tuple[str, int]):
    from fastdns.bench.load import LoadOptions
    return LoadOptions(server=server, duration=a.duration, concurrency=a.concurrency, rate=a.rate,
                       procs=a.procs, timeout=a.timeout, sockets=a.sockets, probe=not a.no_probe,
                       tcp=a.tcp)


def _cmd_run(a: argparse.Namespace) -> int:
    from fastdns.bench.load import parse_server, run_load
    from fastdns.bench.report import format_text, progress_printer, to_dict, write_json
    server = parse_server(a.server)
    w = _workload(a)
    res = run_load(w, _options(a, server), None if a.quiet else progress_printer(sys.stderr, w.lookups))
    d = to_dict(res, f"{server[0]}:{server[1]}")
    # with --json - stdout is the JSON object alone
    print(format_text(d), file=sys.stderr if a.json == "-" else sys.stdout, flush=True)
    if a.json:
        write_json(d, a.json)
    if d["sent"] and not d["answered"] and not d["late"]:
        why = " (ICMP port unreachable)" if d["refused"] else ""
        raise BenchError(f"{a.server}: no query was answered{why}")
    return 0


def _cmd_cluster(a: argparse.Namespace) -> int:
    from fastdns.bench.cluster import (
        ClusterSpec,
        generate_cluster,
        write_cluster,
        write_queries,
    )
    obj, queries = generate_cluster(ClusterSpec(a.services, a.endpoints_per_service, a.headless_fraction,
                                                a.namespaces, a.cluster_domain))
    write_cluster(obj, a.output)
    if a.queries:
        write_queries(queries, a.queries)
    extra = f"; {a.queries}: {len(queries)} queries" if a.queries else ""
    print(f"wrote {a.output}: {len(obj['items'])} objects{extra}")
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    from fastdns.bench.compare import (
        format_table,
        parse_target,
        plot,
        run_compare,
        summary,
    )
    from fastdns.bench.report import write_json
    targets = [parse_target(t) for t in a.target]
    if a.plot and not a.plot.endswith((".png", ".svg")):
        raise BenchError(f"--plot {a.plot}: the file name must end in .png or .svg")
    w = _workload(a)
    runs = run_compare(w, targets, _options(a, targets[0].server), a.rounds,
                       log=(lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    rows = summary(runs)
    text = sys.stderr if a.json == "-" else sys.stdout
    print(format_table(rows), file=text, flush=True)
    if a.plot:
        work = a.queries or f"{a.scenario} {a.cluster}"
        load = f"rate {a.rate:,.0f}/s" if a.rate else f"concurrency {a.concurrency}"
        plot(runs, rows, a.plot, f"fastdns-bench compare: {work}, {'TCP' if a.tcp else 'UDP'}, {load}, "
                                 f"{a.duration:g} s × {a.rounds} rounds")
        print(f"wrote {a.plot}", file=text, flush=True)
    if a.json:
        write_json({"rows": rows, "runs": {tr.target.label: tr.results for tr in runs}}, a.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastdns-bench`` console script."""
    a = build_parser().parse_args(argv)
    try:
        return {"run": _cmd_run, "cluster": _cmd_cluster, "compare": _cmd_compare}[a.cmd](a)
    except FastDNSError as e:
        print(f"fastdns-bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastdns-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
