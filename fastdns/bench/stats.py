"""Latency histograms (1 µs buckets to 100 ms, 1 ms buckets to 100 s) and percentiles."""

from __future__ import annotations

from fastdns.bench._blast import bucket_floor_us

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def _fine_limit() -> int:
    """The first index whose bucket is wider than 1 µs (bisection on the floors)."""
    lo, hi = 0, 1 << 24              # floor(i) == i holds for i < limit
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if bucket_floor_us(mid) == mid and bucket_floor_us(mid + 1) == mid + 1:
            lo = mid
        else:
            hi = mid
    return lo + 1


_FINE = _fine_limit()
_WIDE = int(bucket_floor_us(_FINE + 1) - bucket_floor_us(_FINE))


def floor_index(floor_us: int) -> int:
    """The bucket index whose floor is ``floor_us`` (ValueError if none is)."""
    if floor_us <= _FINE:
        return floor_us
    k, rem = divmod(floor_us - _FINE, _WIDE)
    if rem:
        raise ValueError(f"{floor_us} µs is not a histogram bucket floor")
    return _FINE + k


class Histogram:
    """Sparse bucket counts as the engine returns them; mergeable across processes."""

    def __init__(self, buckets: dict[int, int] | None = None) -> None:
        self.buckets: dict[int, int] = dict(buckets or {})

    def merge(self, other: Histogram | dict[int, int]) -> None:
        """Add another histogram's counts into this one."""
        items = other.buckets if isinstance(other, Histogram) else other
        for k, v in items.items():
            self.buckets[int(k)] = self.buckets.get(int(k), 0) + v

    @property
    def count(self) -> int:
        """Number of samples."""
        return sum(self.buckets.values())

    def percentile(self, q: float) -> int | None:
        """Nearest-rank percentile in µs (bucket floor), None when empty."""
        total = self.count
        if not total:
            return None
        rank = max(1, -(-total * q // 100))  # ceil(total * q / 100)
        seen = 0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen >= rank:
                return int(bucket_floor_us(k))
        return int(bucket_floor_us(max(self.buckets)))

    def floor_pairs(self) -> list[list[int]]:
        """``[[floor_us, count], ...]`` in latency order (the JSON form)."""
        return [[int(bucket_floor_us(k)), v] for k, v in sorted(self.buckets.items()) if v]

    @classmethod
    def from_floor_pairs(cls, pairs: list) -> Histogram:
        """The inverse of :meth:`floor_pairs`; ValueError if a pair is malformed
        or a floor is not a bucket floor of this engine."""
        h = cls()
        for pair in pairs:
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair)):
                raise ValueError(f"bad histogram bucket {pair!r}: expected [floor_us, count]")
            k = floor_index(pair[0])
            h.buckets[k] = h.buckets.get(k, 0) + pair[1]
        return h

    def cdf(self) -> list[tuple[int, float]]:
        """``(µs, fraction ≤)`` points, for plots."""
        total = self.count
        out, seen = [], 0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            out.append((int(bucket_floor_us(k)), seen / total))
        return out

    def summary(self, max_ns: int, sum_ns: int) -> dict[str, float | int | None]:
        """``{p50, p90, p99, p999, max, mean}`` in µs (max and mean exact)."""
        out: dict[str, float | int | None] = {k: self.percentile(q) for k, q in PERCENTILES}
        n = self.count
        out["max"] = round(max_ns / 1000, 1) if n else None
        out["mean"] = round(sum_ns / n / 1000, 1) if n else None
        return out
