"""Text and JSON output of a run (``--json`` writes :func:`to_dict`'s object).

JSON format version 1: ``sent, answered, lost, late, qps, rcodes,
latency_us {p50, p90, p99, p999, max, mean}, per_second`` plus ``unexpected``
(answers matching no query in flight), ``truncated``, ``send_errors``,
``refused`` (ICMP unreachable reports), ``stalls`` (a send waited for a free
ID), ``send_qps`` and, for lookup scenarios, ``lookups {...}``; ``protocol``
(``udp`` or ``tcp``) and, over TCP, ``tcp {connections, closed, connect_errors}``
(connections opened, the first ones included; closed by the server or an
error, their written unanswered queries counted as lost, their unwritten ones
as send_errors; failed connection attempts).

Added later (readers must not require them; results without them stay
readable by ``compare``, but only results with them can be merged):
``start_unix`` (wall-clock UNIX time of the start of second 1 of
``per_second``), ``latency_hist`` (and ``lookups.latency_hist``): the exact
histogram ``{"buckets": [[floor_us, count], ...], "sum_ns", "max_ns"}``, and,
for one share of a load split with ``--index I --of N``, ``share {index, of,
rate, concurrency}`` (the totals; ``rate``/``concurrency`` above are the
share's).  ``fastdns-bench merge`` writes this same schema plus ``merged``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import dns.rcode

from fastdns.bench.load import LoadResult
from fastdns.bench.stats import Histogram
from fastdns.errors import BenchError

FORMAT_VERSION = 1


def _rcode_name(i: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(i))
    except ValueError:
        return f"RCODE{i}"


def hist_dict(h: Histogram, max_ns: int, sum_ns: int) -> dict:
    """The exact histogram as JSON: ``[floor_us, count]`` pairs (bucket floors
    rather than engine indexes, so the file does not depend on the layout)."""
    return {"buckets": h.floor_pairs(), "sum_ns": sum_ns, "max_ns": max_ns}


def to_dict(r: LoadResult, server: str = "") -> dict:
    """The result as one JSON-ready object."""
    c = r.counters
    o = r.options
    out: dict = {
        "version": FORMAT_VERSION,
        "server": server,
        "protocol": "tcp" if o.tcp else "udp",
        "mode": "open" if o.rate else "closed",
        "concurrency": None if o.rate else o.share_concurrency(),
        "rate": o.share_rate(),
        "procs": r.options.procs,
        "duration_s": r.duration,
        "timeout_s": r.options.timeout,
        "sent": c["sent"],
        "answered": c["answered"],
        "lost": c["lost"],
        "late": c["late"],
        "unexpected": c["unexpected"],
        "truncated": c["truncated"],
        "send_errors": c["send_errors"],
        "refused": c["refused"],
        "stalls": c["stalls"],
        "qps": round(c["answered"] / r.duration, 1),
        "send_qps": round(c["sent"] / r.duration, 1),
        "rcodes": {_rcode_name(i): n for i, n in enumerate(r.rcodes) if n},
        "latency_us": r.latency.summary(r.lat_max_ns, c["lat_sum_ns"]),
        "latency_hist": hist_dict(r.latency, r.lat_max_ns, c["lat_sum_ns"]),
        "start_unix": r.start_unix,
        "per_second": [
            {"second": i + 1, "sent": row[0], "answered": row[1], "lost": row[2], "late": row[3],
             **({"lookups": row[4]} if r.lookups else {})}
            for i, row in enumerate(r.per_second)
        ],
    }
    if o.of > 1:
        out["share"] = {"index": o.index, "of": o.of, "rate": o.rate,
                        "concurrency": None if o.rate else o.concurrency}
    if o.tcp:
        out["tcp"] = {"connections": c["tcp_connects"], "closed": c["tcp_closed"],
                      "connect_errors": c["connect_errors"]}
    if r.lookups:
        done = c["lookups_ok"] + c["lookups_negative"]
        out["lookups"] = {
            "started": c["lookups_started"],
            "ok": c["lookups_ok"],
            "negative": c["lookups_negative"],
            "lost": c["lookups_lost"],
            "per_s": round(done / r.duration, 1),
            "queries_per_lookup": round(c["sent"] / c["lookups_started"], 2) if c["lookups_started"] else None,
            "latency_us": r.lookup_latency.summary(r.lk_max_ns, c["lk_sum_ns"]),
            "latency_hist": hist_dict(r.lookup_latency, r.lk_max_ns, c["lk_sum_ns"]),
        }
    out.update(r.extra)
    return out


def write_json(d: dict, path: str) -> None:
    """Write ``d`` to ``path`` (``-`` = stdout)."""
    text = json.dumps(d, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise BenchError(f"{path}: cannot write JSON: {e}") from None


def progress_printer(out: TextIO = sys.stderr, lookups: bool = False):
    """A ``progress(second, totals)`` callback printing one line per second."""
    last: dict[str, int] = {}

    def progress(second: int, tot: dict[str, int]) -> None:
        d = {k: tot[k] - last.get(k, 0) for k in ("sent", "answered", "lost", "late",
                                                   "lookups_ok", "lookups_negative")}
        last.update(tot)
        line = (f"{second:4d}s  sent {d['sent']:>9,}  answered {d['answered']:>9,}  "
                f"lost {d['lost']:>6,}  late {d['late']:>6,}")
        if lookups:
            line += f"  lookups {d['lookups_ok'] + d['lookups_negative']:>9,}"
        print(line, file=out, flush=True)

    return progress


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v}"


def format_text(d: dict) -> str:
    """A human summary of :func:`to_dict`'s object."""
    lat = d["latency_us"]
    lines = [
        f"server {d['server']} ({d.get('protocol', 'udp')})  {d['mode']} loop"
        + (f"  rate {d['rate']:,.0f}/s" if d["rate"] else f"  concurrency {d['concurrency']}")
        + f"  procs {d['procs']}  {d['duration_s']}s  timeout {d['timeout_s']}s",
        f"queries  sent {d['sent']:,}  answered {d['answered']:,}  lost {d['lost']:,}  "
        f"late {d['late']:,}  unexpected {d['unexpected']:,}",
        f"QPS      {d['qps']:,.1f} answered/s  ({d['send_qps']:,.1f} sent/s)",
        "rcodes   " + ("  ".join(f"{k} {v:,}" for k, v in d["rcodes"].items()) or "-"),
        "latency  µs  " + "  ".join(f"{k} {_us(lat[k])}" for k in ("p50", "p90", "p99", "p999", "max", "mean")),
    ]
    if "lookups" in d:
        lk = d["lookups"]
        ll = lk["latency_us"]
        lines.append(f"lookups  started {lk['started']:,}  ok {lk['ok']:,}  negative {lk['negative']:,}  "
                     f"lost {lk['lost']:,}  {lk['per_s']:,.1f}/s  queries/lookup {lk['queries_per_lookup']}")
        lines.append("lookup latency µs  " + "  ".join(
            f"{k} {_us(ll[k])}" for k in ("p50", "p90", "p99", "p999", "max", "mean")))
    if "tcp" in d:
        t = d["tcp"]
        lines.append(f"tcp      connections {t['connections']:,}  closed {t['closed']:,}  "
                     f"connect errors {t['connect_errors']:,}")
    for k in ("send_errors", "stalls", "truncated", "refused"):
        if d.get(k):
            lines.append(f"note     {k} {d[k]:,}")
    return "\n".join(lines)
