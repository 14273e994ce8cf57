"""The pool over time, read from Redis and never written (the dashboard's charts): jobs finished per minute by
outcome, endTime -> result latency percentiles, and Extend requests per second against the plan's limit.

Each is a bounded read: 60 ZCOUNTs per outcome (`Keys.finished_by`), the newest `latency_events` entries of the
events stream, and the limiter's per-second counts of the last minutes (`RateLimiter.granted_per_second`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from extendq.worker.job_search import OUTCOMES
from extendq.worker.ratelimit import RateLimiter
from extendq.worker.store import RedisJobStore

PERCENTILES = (50, 95, 99)
AGE_BUCKETS_S = (60.0, 600.0, 3600.0, 86400.0)
AGE_LABELS = ("under 1 min", "1-10 min", "10-60 min", "1-24 h", "over 24 h")


@dataclass(kw_only=True)
class PoolSeries:
    """Reads the series; `read()` gives one JSON-able dict."""

    store: RedisJobStore
    limiters: Mapping[str, RateLimiter]
    minutes: int = 60
    latency_window_s: float = 900.0
    latency_events: int = 5000
    request_seconds: int = 120
    clock: Callable[[], float] = time.time

    def read(self) -> dict[str, Any]:
        now = self.clock()
        per_minute = self.finished_per_minute(now)
        return {
            "in_flight_ages": self.in_flight_ages(now),
            "finished_per_minute": per_minute,
            "finished_last_hour": {outcome: sum(counts) for outcome, counts in per_minute["outcomes"].items()},
            "time_to_result": self.time_to_result(now),
            "requests": {scope: self.requests(limiter) for scope, limiter in self.limiters.items()},
        }

    def in_flight_ages(self, now: float) -> list[dict[str, Any]]:
        """Jobs in flight by how long ago they were enqueued (the in-flight index's score)."""
        pipe = self.store.client.pipeline(transaction=False)
        bounds = [0.0, *AGE_BUCKETS_S, math.inf]
        for low, high in zip(bounds, bounds[1:], strict=False):
            oldest = "-inf" if high == math.inf else f"({now - high}"
            pipe.zcount(self.store.keys.in_flight, oldest, "+inf" if low == 0 else now - low)
        counts = [int(n) for n in pipe.execute()]
        return [{"age": label, "jobs": n} for label, n in zip(AGE_LABELS, counts, strict=True)]

    def finished_per_minute(self, now: float) -> dict[str, Any]:
        """Jobs finished in each of the last `minutes` whole minutes and the current one, by outcome."""
        end = math.floor(now / 60) * 60 + 60
        starts = [end - 60 * (self.minutes - i) for i in range(self.minutes)]
        pipe = self.store.client.pipeline(transaction=False)
        for outcome in OUTCOMES:
            key = self.store.keys.finished_by("outcome", outcome)
            for start in starts:
                pipe.zcount(key, start, f"({start + 60}")
        counts = [int(n) for n in pipe.execute()]
        per = len(starts)
        return {
            "minute_starts": starts,
            "outcomes": {outcome: counts[i * per : (i + 1) * per] for i, outcome in enumerate(OUTCOMES)},
        }

    def time_to_result(self, now: float) -> dict[str, Any]:
        """Percentiles of endTime -> result over the jobs finished in the last `latency_window_s` (at most the
        newest `latency_events` events are read)."""
        since_ms = int((now - self.latency_window_s) * 1000)
        entries: Any = self.store.client.xrevrange(self.store.keys.events, "+", since_ms, count=self.latency_events)
        values = sorted(float(fields["to_result_s"]) for _, fields in entries or [] if fields.get("to_result_s"))
        return {
            "window_s": self.latency_window_s,
            "count": len(values),
            "percentiles_s": {f"p{p}": _percentile(values, p) for p in PERCENTILES} if values else {},
        }

    def requests(self, limiter: RateLimiter) -> dict[str, Any]:
        """Request tokens granted per second over the last `request_seconds`, with the plan's limit."""
        counted = limiter.granted_per_second(self.request_seconds)
        now = int(limiter.server_time())
        seconds = list(range(now - self.request_seconds + 1, now + 1))
        return {
            "limit_per_s": limiter.limits.requests_per_second,
            "seconds": seconds,
            "granted": [counted.get(second, 0) for second in seconds],
        }


def _percentile(values: list[float], p: int) -> float:
    """The nearest-rank percentile of sorted `values`."""
    rank = max(math.ceil(p / 100 * len(values)), 1)
    return round(values[rank - 1], 4)
