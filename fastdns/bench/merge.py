"""``fastdns-bench merge``: combine the results of N runs (the pods of an
Indexed Job, or processes on several machines) into one, exactly.

* counts (sent, answered, lost, late, rcodes, lookups, TCP) are added;
* latency histograms are summed bucket by bucket and the percentiles computed
  from the sum (never averaged); max is the max, mean the summed sum over the
  summed count;
* ``per_second`` rows are aligned by wall-clock second: each result carries
  ``start_unix``, the UNIX time of the start of its second 1; a result that
  started ``d`` seconds after the earliest is shifted by ``round(d)`` rows
  (pods started at one agreed instant, ``--start-at``, all have ``d`` ≈ 0);
* ``duration_s`` is the union of the runs' spans (earliest start to latest
  start + duration) and ``qps`` / ``send_qps`` / ``lookups.per_s`` come from
  the merged counts over it.

The output has the schema of a single run (``report.to_dict``) plus
``merged {results, files, start_unix}``, so ``compare --result`` and its
``--plot`` read it like any result, and merged results can be merged again.

A file that cannot be read, is not JSON or is not a result with the fields
an exact merge needs raises :class:`ResultFileError` (exit code 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastdns.bench.report import FORMAT_VERSION
from fastdns.bench.stats import Histogram
from fastdns.errors import BenchError

COUNTS = ("sent", "answered", "lost", "late", "unexpected", "truncated", "send_errors", "refused", "stalls")
SECOND_KEYS = ("sent", "answered", "lost", "late", "lookups")


class ResultFileError(BenchError):
    """A result file is missing, unreadable, not JSON, or not a result."""

    exit_code = 2


def _extract_json(text: str) -> Any:
    """The JSON object of ``text``: the whole text, or else the last block of
    lines from ``{`` to ``}`` (a pod's log: the text summary, then the JSON)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    lines = text.splitlines()
    ends = [i for i, line in enumerate(lines) if line == "}"]
    for end in reversed(ends):
        starts = [i for i in range(end) if lines[i] == "{"]
        for start in reversed(starts):
            try:
                return json.loads("\n".join(lines[start:end + 1]))
            except ValueError:
                continue
    raise ValueError("no JSON object")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and not isinstance(v, bool)


def read_result(path: str | Path, *, mergeable: bool = True) -> dict:
    """Read and check one result (a ``--json`` file or a log holding one).

    ``mergeable``: also require what an exact merge needs (``start_unix``
    and the histograms), which results of older versions lack."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path}: cannot read: {e}") from None
    try:
        d = _extract_json(text)
    except ValueError:
        raise ResultFileError(f"{path}: not JSON (expected a fastdns-bench result, "
                              "from `run --json` or a bench pod's log)") from None

    def bad(why: str) -> ResultFileError:
        return ResultFileError(f"{path}: not a fastdns-bench result: {why}")

    if not isinstance(d, dict):
        raise bad(f"expected a JSON object, found {type(d).__name__}")
    if "steps" in d and "sent" not in d:
        raise bad("this is a `ramp` result (merge and compare take `run` results)")
    if "rows" in d and "runs" in d:
        raise bad("this is a `compare` result (merge and compare take `run` results)")
    if not _is_int(d.get("version")):
        raise bad("no integer 'version'")
    if d["version"] > FORMAT_VERSION:
        raise bad(f"format version {d['version']} is newer than this fastdns-bench's {FORMAT_VERSION}")
    for k in ("sent", "answered", "lost", "late"):
        if not _is_int(d.get(k)) or d[k] < 0:
            raise bad(f"'{k}' must be a count")
    if not _is_num(d.get("duration_s")) or d["duration_s"] <= 0:
        raise bad("'duration_s' must be a positive number")
    if d.get("mode") not in ("open", "closed"):
        raise bad("'mode' must be 'open' or 'closed'")
    if not isinstance(d.get("rcodes"), dict) or not all(_is_int(v) for v in d["rcodes"].values()):
        raise bad("'rcodes' must map names to counts")
    if not isinstance(d.get("latency_us"), dict):
        raise bad("no 'latency_us' object")
    ps = d.get("per_second")
    if not isinstance(ps, list) or not all(
            isinstance(row, dict) and all(_is_int(row.get(k, 0)) for k in SECOND_KEYS) for row in ps):
        raise bad("'per_second' must be a list of {second, sent, answered, lost, late} objects")
    if not mergeable:
        return d
    if not _is_num(d.get("start_unix")):
        raise ResultFileError(f"{path}: no 'start_unix' (a result of an older fastdns-bench): "
                              "it cannot be aligned with the others; rerun it")
    for where, obj in (("", d), ("lookups.", d.get("lookups"))):
        if where and obj is None:
            continue
        if where and not isinstance(obj, dict):
            raise bad("'lookups' must be an object")
        h = obj.get("latency_hist")
        if h is None:
            raise ResultFileError(f"{path}: no '{where}latency_hist' (a result of an older "
                                  "fastdns-bench): its percentiles cannot be merged exactly; rerun it")
        if not isinstance(h, dict) or not _is_int(h.get("sum_ns")) or not _is_int(h.get("max_ns")):
            raise bad(f"'{where}latency_hist' must be {{buckets, sum_ns, max_ns}}")
        try:
            Histogram.from_floor_pairs(h.get("buckets") if isinstance(h.get("buckets"), list) else [None])
        except ValueError as e:
            raise bad(f"'{where}latency_hist': {e}") from None
    return d


def histogram_of(d: dict) -> Histogram | None:
    """The query latency histogram of a result, None if it has none (old results)."""
    h = d.get("latency_hist")
    return Histogram.from_floor_pairs(h["buckets"]) if isinstance(h, dict) else None


def _merge_hist(parts: list[dict]) -> tuple[Histogram, dict, dict]:
    h = Histogram()
    for p in parts:
        h.merge(Histogram.from_floor_pairs(p["buckets"]))
    sum_ns = sum(p["sum_ns"] for p in parts)
    max_ns = max(p["max_ns"] for p in parts)
    return h, h.summary(max_ns, sum_ns), {"buckets": h.floor_pairs(), "sum_ns": sum_ns, "max_ns": max_ns}


def _same(results: list[tuple[str, dict]], key: str, default: Any = None) -> Any:
    vals = {json.dumps(d.get(key, default)) for _, d in results}
    if len(vals) > 1:
        raise ResultFileError(f"cannot merge results of different '{key}': "
                              + ", ".join(f"{path}: {d.get(key, default)}" for path, d in results))
    return results[0][1].get(key, default)


def _sum_opt(vals: list) -> Any:
    return None if any(v is None for v in vals) else sum(vals)


def merge_results(results: list[tuple[str, dict]]) -> dict:
    """Merge ``(path, result)`` pairs (each checked by :func:`read_result`)."""
    if not results:
        raise BenchError("merge needs at least one result file")
    ds = [d for _, d in results]
    mode = _same(results, "mode")
    protocol = _same(results, "protocol", "udp")
    has_lookups = {"lookups" in d for d in ds}
    if len(has_lookups) > 1:
        raise ResultFileError("cannot merge lookup-scenario results with query-file results: "
                              + ", ".join(p for p, _ in results))
    start = min(d["start_unix"] for d in ds)
    end = max(d["start_unix"] + d["duration_s"] for d in ds)
    span = end - start
    servers = list(dict.fromkeys(d.get("server", "") for d in ds))
    rcodes: dict[str, int] = {}
    for d in ds:
        for k, v in d["rcodes"].items():
            rcodes[k] = rcodes.get(k, 0) + v
    counts = {k: sum(d.get(k, 0) for d in ds) for k in COUNTS}
    _, lat, lat_hist = _merge_hist([d["latency_hist"] for d in ds])
    rows: list[dict[str, int]] = []
    for d in ds:
        off = round(d["start_unix"] - start)
        for i, row in enumerate(d["per_second"]):
            while len(rows) <= off + i:
                rows.append({k: 0 for k in SECOND_KEYS})
            for k in SECOND_KEYS:
                rows[off + i][k] += row.get(k, 0)
    out: dict = {
        "version": FORMAT_VERSION,
        "server": ",".join(servers),
        "protocol": protocol,
        "mode": mode,
        "concurrency": _sum_opt([d.get("concurrency") for d in ds]) if mode == "closed" else None,
        "rate": _sum_opt([d.get("rate") for d in ds]) if mode == "open" else None,
        "procs": sum(d.get("procs", 1) for d in ds),
        "duration_s": round(span, 6),
        "timeout_s": max((d.get("timeout_s") for d in ds if _is_num(d.get("timeout_s"))), default=None),
        **counts,
        "qps": round(counts["answered"] / span, 1),
        "send_qps": round(counts["sent"] / span, 1),
        "rcodes": dict(sorted(rcodes.items(), key=lambda kv: -kv[1])),
        "latency_us": lat,
        "latency_hist": lat_hist,
        "start_unix": round(start, 6),
        "per_second": [{"second": i + 1, "sent": r["sent"], "answered": r["answered"], "lost": r["lost"],
                        "late": r["late"], **({"lookups": r["lookups"]} if True in has_lookups else {})}
                       for i, r in enumerate(rows)],
    }
    if any("tcp" in d for d in ds):
        out["tcp"] = {k: sum(d.get("tcp", {}).get(k, 0) for d in ds)
                      for k in ("connections", "closed", "connect_errors")}
    if True in has_lookups:
        lks = [d["lookups"] for d in ds]
        lk = {k: sum(x.get(k, 0) for x in lks) for k in ("started", "ok", "negative", "lost")}
        _, lk_lat, lk_hist = _merge_hist([x["latency_hist"] for x in lks])
        lk["per_s"] = round((lk["ok"] + lk["negative"]) / span, 1)
        lk["queries_per_lookup"] = round(counts["sent"] / lk["started"], 2) if lk["started"] else None
        lk["latency_us"] = lk_lat
        lk["latency_hist"] = lk_hist
        out["lookups"] = lk
    shares = [d["share"] for d in ds if isinstance(d.get("share"), dict)]
    if shares:
        indexes = sorted(s.get("index") for s in shares)
        ofs = {s.get("of") for s in shares}
        out["shares"] = {"of": sorted(ofs), "indexes": indexes,
                         "complete": len(ofs) == 1 and indexes == list(range(next(iter(ofs))))}
    out["merged"] = {"results": sum(d.get("merged", {}).get("results", 1) for d in ds),
                     "files": [p for p, _ in results],
                     "start_unix": [d["start_unix"] for d in ds]}
    return out
