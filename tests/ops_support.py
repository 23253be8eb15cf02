"""Helpers for the ops tests: HTTP GETs, scrapes parsed by prometheus_client's parser."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """(status, body); (0, error) when nothing listens (or nothing answers within
    ``timeout``: generous, so a busy machine is not mistaken for a dead server)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def scrape(port: int) -> dict[Sample, float]:
    """Every sample of /metrics, keyed by (name, labels), through the official parser."""
    code, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, text
    out: dict[Sample, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict[Sample, float], metric: str, **labels: str) -> float:
    """Sum of the samples called ``metric`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= set(ls))


def wait_until(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
