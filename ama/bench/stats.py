"""Statistics for benchmark results: percentiles, latency histograms and slope fits.

Pure code: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Histogram buckets grow by 1 % each, from 1 microsecond up, so a percentile
# read from the histogram is within 1 % of the exact value.
BUCKET_GROWTH = 1.01
_LOG_GROWTH = math.log(BUCKET_GROWTH)
SMALLEST_MS = 0.001


def percentile(values: Sequence[float], p: float) -> float:
    """Return the nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``.

    The nearest rank is the smallest value with at least ``p`` % of the
    values at or below it, so p99.9 of 1,000 values is the largest one.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def bucket_of(ms: float) -> int:
    if ms <= SMALLEST_MS:
        return 0
    return int(math.log(ms / SMALLEST_MS) / _LOG_GROWTH) + 1


def bucket_upper_ms(bucket: int) -> float:
    return SMALLEST_MS * BUCKET_GROWTH**bucket


@dataclass
class LatencyHistogram:
    """Latencies in milliseconds, kept as counts in 1 % wide buckets.

    Workers fill one each and the coordinator merges them; the dict form
    travels between processes.
    """

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        bucket = bucket_of(ms)
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1
        self.count += 1
        self.total_ms += ms
        if ms < self.min_ms:
            self.min_ms = ms
        if ms > self.max_ms:
            self.max_ms = ms

    def add_all(self, values: Iterable[float]) -> None:
        for ms in values:
            self.add(ms)

    def merge(self, other: "LatencyHistogram") -> None:
        for bucket, count in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + count
        self.count += other.count
        self.total_ms += other.total_ms
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, p: float) -> float:
        """Return the nearest-rank percentile, as the upper edge of its bucket clamped to the observed range."""
        if self.count == 0:
            raise ValueError("percentile of an empty histogram")
        if not 0 < p <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {p}")
        rank = max(math.ceil(p / 100 * self.count), 1)
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return min(max(bucket_upper_ms(bucket), self.min_ms), self.max_ms)
        return self.max_ms

    def mean(self) -> float:
        return self.total_ms / self.count if self.count else math.nan

    def cdf(self) -> list[tuple[float, float]]:
        """Return (latency ms, fraction at or below it) points, one per non-empty bucket."""
        points = []
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            points.append((min(bucket_upper_ms(bucket), self.max_ms), seen / self.count))
        return points

    def summary(self) -> dict:
        """Return p50, p99, p99.9, mean and max in milliseconds, rounded to 0.01 ms."""
        if self.count == 0:
            return {"samples": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None, "mean_ms": None, "max_ms": None}
        return {
            "samples": self.count,
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "p999_ms": round(self.percentile(99.9), 2),
            "mean_ms": round(self.mean(), 2),
            "max_ms": round(self.max_ms, 2),
        }

    def to_dict(self) -> dict:
        return {"buckets": self.buckets, "count": self.count, "total_ms": self.total_ms, "min_ms": self.min_ms, "max_ms": self.max_ms}

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyHistogram":
        buckets = {int(bucket): count for bucket, count in data["buckets"].items()}
        return cls(buckets, data["count"], data["total_ms"], data["min_ms"], data["max_ms"])


@dataclass(frozen=True)
class LineFit:
    slope: float
    intercept: float
    r_squared: float


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LineFit:
    """Fit ``y = slope * x + intercept`` by least squares; needs two or more distinct x values."""
    if len(xs) != len(ys):
        raise ValueError(f"fit_line needs as many x as y values, got {len(xs)} and {len(ys)}")
    n = len(xs)
    mean_x = sum(xs) / n if n else 0.0
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        raise ValueError("fit_line needs at least two distinct x values")
    mean_y = sum(ys) / n
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    syy = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    r_squared = 1.0 - residual / syy if syy else 1.0
    return LineFit(slope, intercept, r_squared)


def latencies_from_counts(send_times: Sequence[float], seen_times: Sequence[float]) -> list[float]:
    """Match the n-th vote sent on a question with the first time a watcher showed a count of n.

    Both sequences are monotonic times in seconds, ``send_times`` sorted.
    Returns latencies in milliseconds for the votes the watcher saw; votes
    beyond ``len(seen_times)`` were never shown.

    NOTE: two votes on one question sent less than a network round trip
    apart may be applied in the other order. A count of n still means that
    n votes were applied, so the error is bounded by that gap.
    """
    return [(seen - sent) * 1000.0 for sent, seen in zip(send_times, seen_times)]
