"""Same-run comparisons: one workload against several targets, interleaved.

Round ``r`` runs every target once (in reverse order on odd rounds, so a
drift of the machine hits every target alike); the table shows each target's
medians over the rounds and their ratios to the first target.

A row can also come from result files (``--result LABEL=FILE``, each file
one round): ``run --json`` results, pod logs, or ``merge`` output.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastdns.bench.load import LoadOptions, LoadResult, parse_server, run_load
from fastdns.bench.queries import Workload
from fastdns.bench.report import to_dict
from fastdns.bench.stats import Histogram
from fastdns.errors import BenchError


@dataclass
class Target:
    """A labelled server."""

    label: str
    server: tuple[str, int]


def parse_target(text: str) -> Target:
    """``LABEL=HOST:PORT`` → Target (BenchError if malformed)."""
    label, sep, addr = text.partition("=")
    if not sep or not label or not addr:
        raise BenchError(f"bad --target {text!r}: expected LABEL=HOST:PORT")
    return Target(label, parse_server(addr))


@dataclass
class TargetRuns:
    """Every round's result for one target."""

    target: Target
    results: list[dict]
    latency: Histogram


def run_compare(w: Workload, targets: list[Target], opts: LoadOptions, rounds: int,
                log: Callable[[str], None] = lambda s: None) -> list[TargetRuns]:
    """Run the rounds; every target answers a probe before the first round."""
    if len(targets) < 1:
        raise BenchError("compare needs at least one --target")
    if len({t.label for t in targets}) != len(targets):
        raise BenchError("compare: target labels must be unique")
    if rounds < 1:
        raise BenchError("--rounds must be at least 1")
    runs = [TargetRuns(t, [], Histogram()) for t in targets]
    for r in range(rounds):
        order = runs if r % 2 == 0 else list(reversed(runs))
        for tr in order:
            o = dataclasses.replace(opts, server=tr.target.server, probe=(r == 0))
            res: LoadResult = run_load(w, o)
            d = to_dict(res, f"{tr.target.server[0]}:{tr.target.server[1]}")
            tr.results.append(d)
            tr.latency.merge(res.latency)
            log(f"round {r + 1}/{rounds}  {tr.target.label:<12} qps {d['qps']:>12,.0f}  "
                f"p50 {d['latency_us']['p50']} µs  lost {d['lost']}")
    return runs


def result_runs(label: str, paths: list[str]) -> TargetRuns:
    """A row made of saved results (each file one round), read by
    :func:`fastdns.bench.merge.read_result`; the latency CDF pools the files'
    histograms (results of older versions, without one, add nothing to it)."""
    from fastdns.bench.merge import histogram_of, read_result
    results = [read_result(p, mergeable=False) for p in paths]
    lat = Histogram()
    for d in results:
        h = histogram_of(d)
        if h is not None:
            lat.merge(h)
    server = results[0].get("server") or label
    host, _, port = server.rpartition(":")
    return TargetRuns(Target(label, (host or server, int(port) if port.isdigit() else 0)), results, lat)


def parse_result_source(text: str) -> tuple[str, str]:
    """``LABEL=FILE`` → (label, file)."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise BenchError(f"bad --result {text!r}: expected LABEL=FILE")
    return label, path


def _med(values: list[float | int | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summary(runs: list[TargetRuns]) -> list[dict]:
    """One row of medians per target, with ratios to the first."""
    rows = []
    for tr in runs:
        rs = tr.results
        row: dict[str, Any] = {
            "label": tr.target.label,
            "server": rs[0].get("server") or f"{tr.target.server[0]}:{tr.target.server[1]}",
            "rounds": len(rs),
            "qps": _med([d["qps"] for d in rs]),
            "p50_us": _med([d["latency_us"]["p50"] for d in rs]),
            "p99_us": _med([d["latency_us"]["p99"] for d in rs]),
            "lost": _med([d["lost"] for d in rs]),
            "late": _med([d["late"] for d in rs]),
        }
        if "lookups" in rs[0]:
            row["lookups_per_s"] = _med([d["lookups"]["per_s"] for d in rs])
            row["lookup_p50_us"] = _med([d["lookups"]["latency_us"]["p50"] for d in rs])
        rows.append(row)
    base = rows[0]
    for row in rows:
        for k in ("qps", "lookups_per_s", "p50_us", "p99_us"):
            if k in row and row[k] and base.get(k):
                row[f"{k}_ratio"] = round(row[k] / base[k], 3)
    return rows


def format_table(rows: list[dict]) -> str:
    """The side-by-side table of medians."""
    cols = [("label", "target"), ("qps", "QPS"), ("qps_ratio", "×QPS"), ("p50_us", "p50 µs"),
            ("p99_us", "p99 µs"), ("p99_us_ratio", "×p99"), ("lost", "lost"), ("late", "late")]
    if "lookups_per_s" in rows[0]:
        cols[3:3] = [("lookups_per_s", "lookups/s"), ("lookups_per_s_ratio", "×lookups"),
                     ("lookup_p50_us", "lookup p50 µs")]

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if v < 10 else f"{v:,.0f}"
        return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)

    table = [[h for _, h in cols]] + [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in table)


def pyplot(path: str) -> tuple[Any, Any]:
    """matplotlib's ``pyplot`` (headless) and ``FuncFormatter`` for ``--plot PATH``; a
    BenchError when the name is not .png/.svg or matplotlib is not installed."""
    if not path.endswith((".png", ".svg")):
        raise BenchError(f"--plot {path}: the file name must end in .png or .svg")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install 'fastdns[plot]'") from None
    return plt, FuncFormatter


def plot(runs: list[TargetRuns], rows: list[dict], path: str, title: str = "") -> None:
    """Latency CDF (every round's answers) and QPS per target (median bar, one
    dot per round), to PNG or SVG (needs matplotlib, the ``plot`` extra)."""
    plt, FuncFormatter = pyplot(path)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, tr in enumerate(runs):
        pts = tr.latency.cdf()
        if pts:
            ax1.step([max(p[0], 1) for p in pts], [p[1] for p in pts], where="post",
                     color=colours[i % len(colours)], label=tr.target.label)
    ax1.set_xscale("log")
    ax1.set_xlabel("latency (µs, log scale)")
    ax1.set_ylabel("fraction of answers ≤ latency")
    ax1.set_ylim(0, 1.01)
    ax1.grid(True, which="both", alpha=0.3)
    ax1.set_title("latency CDF (all rounds)")
    ax1.legend(loc="lower right")
    x = list(range(len(rows)))
    bars = ax2.bar(x, [r["qps"] or 0 for r in rows], color=[colours[i % len(colours)] for i in x], alpha=0.8)
    for i, tr in enumerate(runs):
        qs = [d["qps"] for d in tr.results]
        ax2.plot([i] * len(qs), qs, "k.", markersize=6, label="one round" if i == 0 else None)
    for b, r in zip(bars, rows):
        ratio = f"  ×{r['qps_ratio']:.2f}" if r.get("qps_ratio") is not None else ""
        ax2.annotate(f"{r['qps'] or 0:,.0f}{ratio}", (b.get_x() + b.get_width() / 2, b.get_height()),
                     ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    ax2.set_xticks(x, [r["label"] for r in rows])
    ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax2.set_ylabel("answered QPS (bar: median of rounds)")
    ax2.set_ylim(0, max([d["qps"] for tr in runs for d in tr.results] + [1]) * 1.15)
    ax2.set_title("throughput")
    ax2.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise BenchError(f"--plot {path}: {e}") from None
    finally:
        plt.close(fig)
