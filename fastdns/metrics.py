"""Prometheus metrics with CoreDNS's names and labels, from the workers' shared counters.

:class:`FastDNSCollector` is a ``prometheus_client`` custom collector: on every
scrape it sums the per-worker counter rows of the shared-memory segment
(:mod:`fastdns.stats`) and the shared cache's rows; nothing is sent between
processes per query.

Label notes (what fastdns fills, and where it differs from CoreDNS):

* ``server`` is ``dns://[BIND]:PORT`` of the server block (its first ``bind``
  address when it has several; CoreDNS runs one server per address).
* ``zone`` is the server block's first zone (CoreDNS: the zone of the block
  that matched, so the same for single-zone blocks); queries that match no
  block are under zone ``dropped`` as in CoreDNS, with ``server`` of the
  first listener.
* ``view`` is always ``""`` (fastdns has no ``view`` plugin).
* ``plugin`` on ``coredns_dns_responses_total`` is ``kubernetes`` (compiled
  table), ``cache`` (shared cache hit), ``forward`` (reserved for the
  forwarder's counts) or ``""`` (anything else Python wrote, and server-made
  errors).
* ``family`` on TCP requests is always ``1``: the TCP path does not pass the
  peer's family to the engine yet.
* ``coredns_dns_requests_total`` counts requests when they arrive (CoreDNS
  counts them when answered): a query dropped as malformed is counted under
  zone ``dropped``, type ``other``.
* Durations of answers written in C are measured from ``recvmmsg`` to the end
  of ``sendmmsg`` of their batch; answers written in Python from arrival to
  the reply (:meth:`fastdns._loop.Engine.count_reply`).
* The cache metrics are one shared segment for every block with ``cache``:
  they are labelled with the first such block.
* ``coredns_build_info``'s ``goversion`` holds the Python version.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fastdns.plugins.runtime import sources
from fastdns._loop import counter_layout
from fastdns._version import __version__

__all__ = [
    "QTYPES",
    "RCODES",
    "SIZE_BUCKETS",
    "TIME_BUCKETS",
    "FastDNSCollector",
    "forward_upstreams",
    "server_label",
]

#: CoreDNS's monitored query types (plugin/metrics/vars/monitor.go), in the engine's slot order.
QTYPES = ("A", "AAAA", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG",
          "SOA", "SRV", "TXT", "HTTPS", "SVCB", "IXFR", "AXFR", "ANY", "other")
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13",
          "RCODE14", "RCODE15")
#: plugin.TimeBuckets: ExponentialBuckets(0.00025, 2, 16)
TIME_BUCKETS = tuple(0.00025 * 2 ** k for k in range(16))
#: the request/response size buckets of plugin/metrics/vars
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
PROTOS = ("udp", "tcp")

L = counter_layout()


def server_label(server: Any) -> str:
    """CoreDNS's ``server`` label: ``dns://[BIND]:PORT``."""
    host = server.bind[0] if server.bind else ""
    if ":" in host:
        host = f"[{host}]"
    return f"dns://{host}:{server.port}"


def forward_upstreams(plan: Any) -> list[tuple[int, str]]:
    """Every ``forward`` TO in Corefile order across blocks: ``(block, "host:port")``.

    The position in this list is the upstream's slot in the forward counter
    sections (``_includes/opsstats.pxd``, ``F_*``); slots past 16 are not counted."""
    out = []
    for bi, server in enumerate(plan.servers):
        for conf in server.plugins_named("forward"):
            for up in conf.to:
                host = f"[{up.host}]" if ":" in up.host else up.host
                out.append((bi, f"{host}:{up.port}"))
    return out


def _revision() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=2, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _histogram(counts: list[int], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    acc = 0
    out = []
    for b, c in zip(bounds, counts):
        acc += c
        out.append((_fmt(b), acc))
    acc += counts[len(bounds)]
    out.append(("+Inf", acc))
    return out


def _fmt(b: float) -> str:
    return repr(float(b))


class FastDNSCollector(Collector):
    """Collects on scrape from ``source``, an object with these attributes (read
    each time, so a reload's new plan is picked up): ``plan``, ``counters``
    (:class:`fastdns.stats.CounterSegment` or None), ``cache`` (SharedCache or
    None), ``reload_failed`` (int), ``reload_hash`` (str), ``worker_restarts``
    (int), ``nworkers`` (int), ``generation`` (int)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.revision = _revision()

    def collect(self) -> Iterator[Metric]:
        src = self.source
        plan = src.plan
        build = GaugeMetricFamily("coredns_build_info", "A metric with a constant '1' value "
                                  "labeled by version, revision, and goversion from which "
                                  "CoreDNS was built.", labels=["version", "revision", "goversion"])
        build.add_metric([__version__, self.revision, f"python{platform.python_version()}"], 1)
        yield build
        yield from self._dns(plan, src.counters)
        yield from self._cache(plan, getattr(src, "cache", None))
        yield from self._forward(plan, src.counters)
        yield from self._plugins(plan)
        failed = CounterMetricFamily("coredns_reload_failed", "Counter of the number of failed "
                                     "reload attempts.")
        failed.add_metric([], int(getattr(src, "reload_failed", 0)))
        yield failed
        info = GaugeMetricFamily("coredns_reload_version_info", "A metric with a constant '1' "
                                 "value labeled by hash, and value which type of hash generated.",
                                 labels=["hash", "value"])
        info.add_metric(["sha512", str(getattr(src, "reload_hash", ""))], 1)
        yield info
        restarts = CounterMetricFamily("fastdns_worker_restarts", "Workers restarted by the "
                                       "supervisor after they died.")
        restarts.add_metric([], int(getattr(src, "worker_restarts", 0)))
        yield restarts
        workers = GaugeMetricFamily("fastdns_workers", "Worker processes configured.")
        workers.add_metric([], int(getattr(src, "nworkers", 0)))
        yield workers
        gen = GaugeMetricFamily("fastdns_config_generation", "Configuration generation "
                                "(incremented by every applied reload).")
        gen.add_metric([], int(getattr(src, "generation", 0)))
        yield gen

    # -- DNS -----------------------------------------------------------------

    def _sections(self, plan: Any) -> list[tuple[str, str, int]]:
        """(server, zone, section index) for every block, then "dropped"."""
        out = [(server_label(s), s.zones[0] if s.zones else ".", L["BLOCK_SECT"] + bi)
               for bi, s in enumerate(plan.servers[:L["MAX_BLOCKS"]])]
        first = out[0][0] if out else ""
        out.append((first, "dropped", L["DROPPED_SECT"]))
        return out

    def _dns(self, plan: Any, seg: Any) -> Iterator[Metric]:
        req = CounterMetricFamily("coredns_dns_requests", "Counter of DNS requests made per zone, "
                                  "protocol and family.",
                                  labels=["server", "zone", "view", "proto", "family", "type"])
        resp = CounterMetricFamily("coredns_dns_responses", "Counter of response status codes.",
                                   labels=["server", "zone", "view", "rcode", "plugin"])
        do = CounterMetricFamily("coredns_dns_do_requests", "Counter of DNS requests with DO bit "
                                 "set per zone.", labels=["server", "zone", "view"])
        dur = HistogramMetricFamily("coredns_dns_request_duration_seconds", "Histogram of the "
                                    "time (in seconds) each request took per zone.",
                                    labels=["server", "zone", "view"])
        rqs = HistogramMetricFamily("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP "
                                    "buffer in bytes (64K for TCP) per zone and protocol.",
                                    labels=["server", "zone", "view", "proto"])
        rps = HistogramMetricFamily("coredns_dns_response_size_bytes", "Size of the returned "
                                    "response in bytes.", labels=["server", "zone", "view", "proto"])
        if seg is not None:
            S, nt = L["SECT"], L["NTYPES"]
            names = sources() + ("",) * (L["NSRC"] - len(sources()))
            for server, zone, sect in self._sections(plan):
                c = seg.sum_range(sect * S, (sect + 1) * S)
                if not any(c):
                    continue
                for proto in range(2):
                    for fam in range(2):
                        base = L["B_REQ"] + (proto * 2 + fam) * nt
                        for t in range(nt):
                            if c[base + t]:
                                req.add_metric([server, zone, "", PROTOS[proto], str(fam + 1),
                                                QTYPES[t]], c[base + t])
                for s in range(L["NSRC"]):
                    for rc in range(16):
                        v = c[L["B_RCODE"] + s * 16 + rc]
                        if v:
                            resp.add_metric([server, zone, "", RCODES[rc], names[s]], v)
                if c[L["B_DO"]]:
                    do.add_metric([server, zone, ""], c[L["B_DO"]])
                d = c[L["B_DUR"]:L["B_DUR"] + L["NDUR"]]
                if any(d):
                    dur.add_metric([server, zone, ""], _histogram(d, TIME_BUCKETS),
                                   c[L["B_DUR_SUM"]] / 1e9)
                for proto in range(2):
                    for fam_name, off, sums, metric in (("req", L["B_REQSZ"], L["B_REQSZ_SUM"], rqs),
                                                        ("resp", L["B_RESPSZ"], L["B_RESPSZ_SUM"],
                                                         rps)):
                        h = c[off + proto * 16:off + proto * 16 + L["NSIZE"]]
                        if any(h):
                            metric.add_metric([server, zone, "", PROTOS[proto]],
                                              _histogram(h, SIZE_BUCKETS), c[sums + proto])
        yield from (req, resp, do, dur, rqs, rps)

    # -- cache ---------------------------------------------------------------

    def _cache(self, plan: Any, cache: Any) -> Iterator[Metric]:
        blocks = [s for s in plan.servers if s.plugin("cache") is not None]
        if cache is None or not blocks:
            return
        try:
            st = cache.stats()
        except Exception:  # noqa: BLE001 - a closed cache during shutdown: none this scrape
            return
        server, zones = server_label(blocks[0]), blocks[0].zones[0]
        entries = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the "
                                    "cache.", labels=["server", "type", "zones", "view"])
        hits = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.",
                                   labels=["server", "type", "zones", "view"])
        evictions = CounterMetricFamily("coredns_cache_evictions", "The count of cache evictions.",
                                        labels=["server", "type", "zones", "view"])
        for kind in ("success", "denial"):
            entries.add_metric([server, kind, zones, ""], st["entries"].get(kind, 0))
            hits.add_metric([server, kind, zones, ""], st["hits"].get(kind, 0))
            evictions.add_metric([server, kind, zones, ""], st["evictions"].get(kind, 0))
        total_hits = sum(st["hits"].values())
        misses = CounterMetricFamily("coredns_cache_misses", "The count of cache misses. "
                                     "Deprecated, derive misses from cache hits/requests "
                                     "counters.", labels=["server", "zones", "view"])
        misses.add_metric([server, zones, ""], st["misses"])
        requests = CounterMetricFamily("coredns_cache_requests", "The count of cache requests.",
                                       labels=["server", "zones", "view"])
        requests.add_metric([server, zones, ""], total_hits + st["misses"])
        stale = CounterMetricFamily("coredns_cache_served_stale", "The number of requests served "
                                    "from stale cache entries.", labels=["server", "zones", "view"])
        stale.add_metric([server, zones, ""], sum(st["stale_hits"].values()))
        yield from (entries, hits, misses, requests, evictions, stale)

    # -- forward -------------------------------------------------------------

    def _forward(self, plan: Any, seg: Any) -> Iterator[Metric]:
        ups = forward_upstreams(plan)[:L["FWD_UPSTREAMS"]]
        if not ups:
            return
        reqs = CounterMetricFamily("coredns_forward_requests", "Counter of requests made per "
                                   "upstream.", labels=["to"])
        resps = CounterMetricFamily("coredns_forward_responses", "Counter of responses received "
                                    "per upstream.", labels=["to", "rcode"])
        hc = CounterMetricFamily("coredns_forward_healthcheck_failures", "Counter of the number "
                                 "of failed healthchecks.", labels=["to"])
        phc = CounterMetricFamily("coredns_proxy_healthcheck_failures", "Count of failed health "
                                  "checks per upstream.", labels=["proxy_name", "to"])
        dur = HistogramMetricFamily("coredns_forward_request_duration_seconds", "Histogram of the "
                                    "time each request took.", labels=["to"])
        rejects = CounterMetricFamily("coredns_forward_max_concurrent_rejects", "Counter of the "
                                      "number of queries rejected because the concurrent "
                                      "queries were at maximum.")
        rejected = 0
        base = L["FWD"] * L["SECT"]
        for u, (_, to) in enumerate(ups):
            c = [0] * L["F_STRIDE"] if seg is None else \
                seg.sum_range(base + u * L["F_STRIDE"], base + (u + 1) * L["F_STRIDE"])
            reqs.add_metric([to], c[L["F_REQ"]])
            for rc in range(16):
                if c[L["F_RCODE"] + rc]:
                    resps.add_metric([to, RCODES[rc]], c[L["F_RCODE"] + rc])
            hc.add_metric([to], c[L["F_HC_FAIL"]])
            phc.add_metric(["forward", to], c[L["F_HC_FAIL"]])
            rejected += c[L["F_MC_REJECT"]]
            d = c[L["F_DUR"]:L["F_DUR"] + L["NDUR"]]
            if any(d):
                dur.add_metric([to], _histogram(d, TIME_BUCKETS), c[L["F_DUR_SUM"]] / 1e9)
        rejects.add_metric([], rejected)
        yield from (reqs, resps, hc, phc, dur, rejects)

    def _plugins(self, plan: Any) -> Iterator[Metric]:
        en = GaugeMetricFamily("coredns_plugin_enabled", "A metric that indicates whether a "
                               "plugin is enabled on per server and zone basis.",
                               labels=["server", "zone", "view", "name"])
        for s in plan.servers:
            for z in s.zones:
                for p in dict.fromkeys(p.name for p in s.plugins):
                    en.add_metric([server_label(s), z, "", p], 1)
        yield en
