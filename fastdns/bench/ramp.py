"""``fastdns-bench ramp``: raise the offered rate step by step (open loop)
until the loss or the p99 latency crosses a threshold, and report the last
rate that held -- what ``resperf`` does, with exact counting.

Every step is one open-loop run of the ``run`` command's engine
(:func:`fastdns.bench.load.run_load` with ``rate``) for ``step_duration``
seconds: its counts are the engine's own (every query sent is answered, lost
or late once its step ends; a step ends when its last query is answered or
timed out, so no query spills into the next step), and its p99 comes from
its exact latency histogram, measured from each query's intended send time.

A step *holds* when ``loss_pct`` = 100 × (lost + send_errors) / (sent +
send_errors) is at most ``max_loss_pct`` and (if set) p99 is at most
``max_p99_ms``.  The ramp stops at the first step that does not hold, or
after the step at ``max_rate``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastdns.bench.load import LoadOptions, run_load
from fastdns.bench.queries import Workload
from fastdns.bench.report import FORMAT_VERSION, to_dict
from fastdns.errors import BenchError

MAX_STEPS = 1000


@dataclass
class RampSpec:
    """The rates to try and when to stop."""

    start: float
    max_rate: float
    step: float | None = None          # add this much per step ...
    factor: float | None = None        # ... or multiply by this
    step_duration: float = 5.0
    max_loss_pct: float = 1.0
    max_p99_ms: float | None = None

    def validate(self) -> None:
        """BenchError on nonsense values."""
        if self.start <= 0:
            raise BenchError("--start must be positive")
        if self.max_rate < self.start:
            raise BenchError("--max must be at least --start")
        if (self.step is None) == (self.factor is None):
            raise BenchError("give one of --step RATE or --factor F")
        if self.step is not None and self.step <= 0:
            raise BenchError("--step must be positive")
        if self.factor is not None and self.factor <= 1:
            raise BenchError("--factor must be greater than 1")
        if self.step_duration <= 0:
            raise BenchError("--step-duration must be positive")
        if not 0 <= self.max_loss_pct <= 100:
            raise BenchError("--max-loss must be 0-100 (percent)")
        if self.max_p99_ms is not None and self.max_p99_ms <= 0:
            raise BenchError("--max-p99 must be positive (ms)")
        if len(self.rates()) > MAX_STEPS:
            raise BenchError(f"more than {MAX_STEPS} steps from --start to --max: take bigger steps")

    def rates(self) -> list[float]:
        """Every rate of the ramp, ``start`` to ``max_rate`` (the last one exactly
        ``max_rate`` if the steps overshoot it)."""
        out, r = [], float(self.start)
        while r < self.max_rate * (1 - 1e-9) and len(out) <= MAX_STEPS:
            out.append(round(r, 3))
            r = r + self.step if self.step is not None else r * self.factor  # type: ignore[operator]
        out.append(float(self.max_rate))
        return out


def _step_entry(k: int, rate: float, d: dict, spec: RampSpec) -> dict:
    tried = d["sent"] + d["send_errors"]
    loss = 100.0 * (d["lost"] + d["send_errors"]) / tried if tried else 100.0
    p99 = d["latency_us"]["p99"]
    p99_ms = None if p99 is None else p99 / 1000
    crossed = []
    if loss > spec.max_loss_pct:
        crossed.append("loss")
    if spec.max_p99_ms is not None and (p99_ms is None or p99_ms > spec.max_p99_ms):
        crossed.append("p99")
    return {"step": k, "rate": rate, "sent": d["sent"], "answered": d["answered"], "lost": d["lost"],
            "late": d["late"], "send_errors": d["send_errors"], "loss_pct": round(loss, 4),
            "qps": d["qps"], "send_qps": d["send_qps"], "p99_ms": p99_ms,
            "latency_us": d["latency_us"], "held": not crossed, "crossed": crossed, "result": d}


def run_ramp(w: Workload, opts: LoadOptions, spec: RampSpec,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the ramp; the JSON-ready result (one entry per step run)."""
    spec.validate()
    server = f"{opts.server[0]}:{opts.server[1]}"
    steps: list[dict] = []
    started = time.time()
    stopped_by = "max"
    for k, rate in enumerate(spec.rates(), 1):
        o = dataclasses.replace(opts, rate=rate, duration=spec.step_duration, probe=opts.probe and k == 1)
        d = to_dict(run_load(w, o), server)
        e = _step_entry(k, rate, d, spec)
        steps.append(e)
        p99 = "-" if e["p99_ms"] is None else f"{e['p99_ms']:,.3f}"
        log(f"step {k:3d}  offered {rate:>12,.0f}/s  answered {e['qps']:>12,.1f}/s  "
            f"loss {e['loss_pct']:7.3f} %  p99 {p99} ms  {'held' if e['held'] else 'CROSSED ' + '+'.join(e['crossed'])}")
        if not e["held"]:
            stopped_by = "+".join(e["crossed"])
            break
    held = [e for e in steps if e["held"]]
    last = held[-1] if held else None
    return {
        "version": FORMAT_VERSION,
        "kind": "ramp",
        "server": server,
        "protocol": "tcp" if opts.tcp else "udp",
        "procs": opts.procs,
        "timeout_s": opts.timeout,
        "start_unix": round(started, 6),
        "thresholds": {"max_loss_pct": spec.max_loss_pct, "max_p99_ms": spec.max_p99_ms},
        "ramp": {"start": spec.start, "step": spec.step, "factor": spec.factor, "max": spec.max_rate,
                 "step_duration_s": spec.step_duration},
        "stopped_by": stopped_by,
        "last_held_rate": last["rate"] if last else None,
        "last_held_qps": last["qps"] if last else None,
        "steps": steps,
    }


def format_ramp(d: dict) -> str:
    """The human summary."""
    lines = [f"{'step':>4}  {'offered/s':>12}  {'answered/s':>12}  {'loss %':>8}  {'p99 ms':>9}  held"]
    for e in d["steps"]:
        p99 = "-" if e["p99_ms"] is None else f"{e['p99_ms']:,.3f}"
        lines.append(f"{e['step']:>4}  {e['rate']:>12,.0f}  {e['qps']:>12,.1f}  {e['loss_pct']:>8.3f}  "
                     f"{p99:>9}  {'yes' if e['held'] else 'no (' + '+'.join(e['crossed']) + ')'}")
    th = d["thresholds"]
    limit = f"loss > {th['max_loss_pct']:g} %" + (f" or p99 > {th['max_p99_ms']:g} ms" if th["max_p99_ms"] else "")
    if d["last_held_rate"] is None:
        lines.append(f"no rate held ({limit} at the first step, {d['steps'][0]['rate']:,.0f}/s)")
    elif d["stopped_by"] == "max":
        lines.append(f"every step held up to --max: {d['last_held_rate']:,.0f}/s offered "
                     f"({d['last_held_qps']:,.1f} answered/s); the limit ({limit}) is higher")
    else:
        lines.append(f"last rate that held: {d['last_held_rate']:,.0f}/s offered "
                     f"({d['last_held_qps']:,.1f} answered/s); the next step crossed {limit}")
    return "\n".join(lines)


def plot_ramp(d: dict, path: str, title: str = "") -> None:
    """Offered vs answered QPS and p99 per step, to PNG or SVG (needs matplotlib)."""
    from fastdns.bench.compare import pyplot

    plt, FuncFormatter = pyplot(path)
    steps = d["steps"]
    x = [e["rate"] for e in steps]
    fig, ax1 = plt.subplots(figsize=(9, 4.5))
    ax1.plot(x, x, "--", color="grey", label="offered")
    ax1.plot(x, [e["qps"] for e in steps], "o-", color="C0", label="answered")
    ax1.set_xlabel("offered QPS")
    ax1.set_ylabel("QPS")
    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax1.xaxis.set_major_formatter(fmt)
    ax1.yaxis.set_major_formatter(fmt)
    ax1.grid(True, alpha=0.3)
    ax2 = ax1.twinx()
    ax2.plot(x, [e["p99_ms"] if e["p99_ms"] is not None else float("nan") for e in steps],
             "s-", color="C1", label="p99 latency")
    ax2.set_ylabel("p99 latency (ms)")
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    th = d["thresholds"]
    if th.get("max_p99_ms"):
        ax2.axhline(th["max_p99_ms"], color="C1", alpha=0.4, linestyle=":", label="p99 threshold")
    if d["last_held_rate"] is not None:
        ax1.axvline(d["last_held_rate"], color="C2", alpha=0.6,
                    label=f"last held {d['last_held_rate']:,.0f}/s")
    for e in steps:
        if not e["held"]:
            ax1.annotate("+".join(e["crossed"]) + " crossed", (e["rate"], e["qps"]), xytext=(0, -14),
                         textcoords="offset points", ha="center", color="C3")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper left")
    ax1.set_title(title or f"fastdns-bench ramp: {d['server']} ({d['protocol'].upper()})")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise BenchError(f"--plot {path}: {e}") from None
    finally:
        plt.close(fig)
