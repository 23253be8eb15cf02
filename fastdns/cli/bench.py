"""``fastdns-bench``: argument parsing only; the work is in :mod:`fastdns.bench`.

Commands::

    fastdns-bench run --server HOST:PORT [--tcp] (--queries FILE | --scenario k8s-pod --cluster FILE)
                      [--duration S] [--concurrency N | --rate QPS] [--procs P] [--timeout S]
                      [--index I --of N] [--start-at UNIXTIME] [--json FILE]
    fastdns-bench cluster --services N --endpoints-per-service M [--headless-fraction F]
                          [--namespaces K] -o FILE [--queries FILE]
    fastdns-bench compare (--target LABEL=HOST:PORT | --result LABEL=FILE) ... [--rounds R]
                          [--plot FILE] (workload options, for --target)
    fastdns-bench merge RESULT... [--json FILE]
    fastdns-bench ramp --server HOST:PORT --start RATE (--step RATE | --factor F) --max RATE
                       [--step-duration S] [--max-loss PCT] [--max-p99 MS] [--plot FILE]
                       [--json FILE] (workload options)

With ``--json -`` stdout carries the JSON object only; the text summary (and
``compare``'s table) then go to stderr.  Bad input prints one
``fastdns-bench: ...`` line on stderr and exits 1; a result file that
``merge`` or ``compare --result`` cannot use exits 2.
"""

from __future__ import annotations

import argparse
import sys

from fastdns.errors import BenchError, FastDNSError


def _workload_args(p: argparse.ArgumentParser, *, required: bool = True, load: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=required)
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
    if load:
        p.add_argument("--duration", "-l", type=float, default=10.0, metavar="S",
                       help="seconds of sending (default 10)")
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
    run.add_argument("--index", type=int, default=0, metavar="I",
                     help="with --of N: offer share I (0-based) of the load; --rate/--concurrency are the "
                          "totals of all N runs (a pod of an Indexed Job: $(JOB_COMPLETION_INDEX))")
    run.add_argument("--of", type=int, default=1, metavar="N", help="the load is split over N runs (default 1)")
    run.add_argument("--start-at", metavar="UNIXTIME",
                     help="start sending at this UNIX time (seconds; '+S' = S seconds from now), the "
                          "instant the runs of a split load agreed on; more than 1 s late is an error")
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
    cmp_.add_argument("--target", dest="sources", action="append", type=lambda t: ("target", t),
                      metavar="LABEL=HOST:PORT", help="a server to run the workload against")
    cmp_.add_argument("--result", dest="sources", action="append", type=lambda t: ("result", t),
                      metavar="LABEL=FILE", help="a row from a saved result (run --json, a pod's log, "
                                                 "merge output); repeat a label for more rounds")
    cmp_.add_argument("--rounds", type=int, default=3)
    cmp_.add_argument("--plot", metavar="FILE.png|svg", help="latency CDF and QPS chart (needs matplotlib)")
    cmp_.add_argument("--json", metavar="FILE", help="write rows and every round's result as JSON")
    _workload_args(cmp_, required=False)
    mg = sub.add_parser("merge", help="combine the results of several runs exactly (pods of an Indexed Job)")
    mg.add_argument("results", nargs="+", metavar="RESULT",
                    help="run --json files, or pod logs holding one (text summary, then the JSON)")
    mg.add_argument("--json", default="-", metavar="FILE",
                    help="where to write the merged result (default '-': stdout, the summary on stderr)")
    rp = sub.add_parser("ramp", help="raise the offered rate step by step until loss or p99 crosses a threshold")
    rp.add_argument("--server", "-s", required=True, metavar="HOST:PORT", help="numeric address, port default 53")
    rp.add_argument("--start", type=float, required=True, metavar="RATE", help="first offered rate (QPS)")
    inc = rp.add_mutually_exclusive_group(required=True)
    inc.add_argument("--step", type=float, metavar="RATE", help="add RATE per step")
    inc.add_argument("--factor", type=float, metavar="F", help="multiply the rate by F per step")
    rp.add_argument("--max", type=float, required=True, metavar="RATE", help="last rate to try")
    rp.add_argument("--step-duration", type=float, default=5.0, metavar="S", help="seconds per step (default 5)")
    rp.add_argument("--max-loss", type=float, default=1.0, metavar="PCT",
                    help="a step with more loss (percent of queries) does not hold (default 1)")
    rp.add_argument("--max-p99", type=float, metavar="MS", help="a step with a higher p99 (ms) does not hold")
    rp.add_argument("--plot", metavar="FILE.png|svg", help="offered vs answered QPS and p99 (needs matplotlib)")
    rp.add_argument("--json", metavar="FILE", help="write every step as JSON ('-' = stdout)")
    _workload_args(rp, load=False)
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
    return LoadOptions(server=server, duration=getattr(a, "duration", 10.0),
                       concurrency=getattr(a, "concurrency", 100), rate=getattr(a, "rate", None),
                       procs=a.procs, timeout=a.timeout, sockets=a.sockets, probe=not a.no_probe,
                       tcp=a.tcp, index=getattr(a, "index", 0), of=getattr(a, "of", 1))


def parse_start_at(text: str) -> float:
    """``--start-at``: UNIX seconds, or ``+S`` seconds from now."""
    import time
    try:
        if text.startswith("+"):
            return time.time() + float(text[1:])
        t = float(text)
    except ValueError:
        hint = (" (the Job's __START_AT__ placeholder was not filled in: see deploy/bench-job.yaml)"
                if "START_AT" in text else "")
        raise BenchError(f"--start-at {text!r}: expected a UNIX time in seconds or +SECONDS{hint}") from None
    if not 1e9 < t < 1e11:
        raise BenchError(f"--start-at {text!r}: not a plausible UNIX time (seconds since 1970)")
    return t


def _cmd_run(a: argparse.Namespace) -> int:
    from fastdns.bench.load import parse_server, run_load
    from fastdns.bench.report import format_text, progress_printer, to_dict, write_json
    server = parse_server(a.server)
    opts = _options(a, server)
    if a.start_at is not None:
        opts.start_at = parse_start_at(a.start_at)
    w = _workload(a)
    res = run_load(w, opts, None if a.quiet else progress_printer(sys.stderr, w.lookups))
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
        parse_result_source,
        parse_target,
        plot,
        result_runs,
        run_compare,
        summary,
    )
    from fastdns.bench.report import write_json
    if not a.sources:
        raise BenchError("compare needs at least one --target LABEL=HOST:PORT or --result LABEL=FILE")
    targets = [parse_target(t) for kind, t in a.sources if kind == "target"]
    files: dict[str, list[str]] = {}
    for kind, t in a.sources:
        if kind == "result":
            label, path = parse_result_source(t)
            files.setdefault(label, []).append(path)
    if set(files) & {t.label for t in targets}:
        raise BenchError("compare: a label names both a --target and a --result")
    if a.plot and not a.plot.endswith((".png", ".svg")):
        raise BenchError(f"--plot {a.plot}: the file name must end in .png or .svg")
    saved = {label: result_runs(label, paths) for label, paths in files.items()}
    live = {}
    if targets:
        if not (a.queries or a.scenario):
            raise BenchError("compare --target needs a workload: --queries FILE or --scenario NAME")
        w = _workload(a)
        live = {tr.target.label: tr for tr in run_compare(
            w, targets, _options(a, targets[0].server), a.rounds,
            log=(lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))}
    # rows in command-line order (the first is the base of the ratios)
    order = list(dict.fromkeys(parse_target(t).label if kind == "target" else parse_result_source(t)[0]
                               for kind, t in a.sources))
    runs = [live[label] if label in live else saved[label] for label in order]
    rows = summary(runs)
    text = sys.stderr if a.json == "-" else sys.stdout
    print(format_table(rows), file=text, flush=True)
    if a.plot:
        if targets:
            work = a.queries or f"{a.scenario} {a.cluster}"
            load = f"rate {a.rate:,.0f}/s" if a.rate else f"concurrency {a.concurrency}"
            title = (f"fastdns-bench compare: {work}, {'TCP' if a.tcp else 'UDP'}, {load}, "
                     f"{a.duration:g} s × {a.rounds} rounds")
        else:
            title = "fastdns-bench compare: saved results"
        plot(runs, rows, a.plot, title)
        print(f"wrote {a.plot}", file=text, flush=True)
    if a.json:
        write_json({"rows": rows, "runs": {tr.target.label: tr.results for tr in runs}}, a.json)
    return 0


def _cmd_merge(a: argparse.Namespace) -> int:
    from fastdns.bench.merge import merge_results, read_result
    from fastdns.bench.report import format_text, write_json
    merged = merge_results([(p, read_result(p)) for p in a.results])
    text = sys.stderr if a.json == "-" else sys.stdout
    m = merged["merged"]
    print(f"merged {m['results']} results, started within "
          f"{max(m['start_unix']) - min(m['start_unix']):.3f} s", file=text)
    sh = merged.get("shares")
    if sh and not sh["complete"]:
        print(f"fastdns-bench: warning: shares {sh['indexes']} of {sh['of']}: some are missing or repeated",
              file=sys.stderr)
    print(format_text(merged), file=text, flush=True)
    write_json(merged, a.json)
    return 0


def _cmd_ramp(a: argparse.Namespace) -> int:
    from fastdns.bench.load import parse_server
    from fastdns.bench.ramp import RampSpec, format_ramp, plot_ramp, run_ramp
    from fastdns.bench.report import write_json
    server = parse_server(a.server)
    spec = RampSpec(start=a.start, max_rate=a.max, step=a.step, factor=a.factor,
                    step_duration=a.step_duration, max_loss_pct=a.max_loss, max_p99_ms=a.max_p99)
    spec.validate()
    if a.plot and not a.plot.endswith((".png", ".svg")):
        raise BenchError(f"--plot {a.plot}: the file name must end in .png or .svg")
    if a.plot:
        try:
            import matplotlib  # noqa: F401  (fail before the ramp, not after)
        except ImportError:
            raise BenchError("--plot needs matplotlib: pip install 'fastdns[plot]'") from None
    w = _workload(a)
    text = sys.stderr if a.json == "-" else sys.stdout
    d = run_ramp(w, _options(a, server), spec,
                 log=(lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    print(format_ramp(d), file=text, flush=True)
    if a.plot:
        plot_ramp(d, a.plot)
        print(f"wrote {a.plot}", file=text, flush=True)
    if a.json:
        write_json(d, a.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastdns-bench`` console script."""
    a = build_parser().parse_args(argv)
    try:
        return {"run": _cmd_run, "cluster": _cmd_cluster, "compare": _cmd_compare,
                "merge": _cmd_merge, "ramp": _cmd_ramp}[a.cmd](a)
    except FastDNSError as e:
        print(f"fastdns-bench: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)   # 2: a result file merge/compare cannot use
    except KeyboardInterrupt:
        print("fastdns-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
