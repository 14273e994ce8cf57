"""What clients really did: a log of Extend-surface requests and per-route counters."""

from __future__ import annotations

from collections import deque
from typing import Any

MAX_ENTRIES = 100_000


class RequestLog:
    """The last 100k requests, plus counts by route template and status since the last reset."""

    def __init__(self, maxlen: int = MAX_ENTRIES) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.counts: dict[str, dict[str, int]] = {}
        self.total = 0
        self.rate_limited = 0
        self.dropped = 0
        self.lost = 0
        self.faults: dict[str, int] = {}

    def record(
        self,
        method: str,
        route: str,
        path: str,
        status: int | None,
        at: float,
        retry_after: int | None,
        *,
        lost: bool = False,
        faults: tuple[str, ...] = (),
    ) -> None:
        """Log one request arrived at `at`; `status` None means no answer reached the client: the
        connection was dropped before handling, or (`lost`) after handling. `faults` names the late
        commit, slow answer or outage that shaped the answer."""
        self.entries.append(
            {
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "at": at,
                "retryAfter": retry_after,
                "lost": lost,
                "faults": faults,
            }
        )
        for fault in faults:
            self.faults[fault] = self.faults.get(fault, 0) + 1
        per_route = self.counts.setdefault(f"{method} {route}", {})
        key = str(status) if status is not None else "lost" if lost else "dropped"
        per_route[key] = per_route.get(key, 0) + 1
        self.total += 1
        if status == 429:
            self.rate_limited += 1
        elif status is None:
            if lost:
                self.lost += 1
            else:
                self.dropped += 1

    def since(self, at: float | None) -> list[dict[str, Any]]:
        """Entries received at or after `at` (all when None)."""
        if at is None:
            return list(self.entries)
        return [e for e in self.entries if e["at"] >= at]

    def clear(self) -> None:
        """Forget everything."""
        self.entries.clear()
        self.counts.clear()
        self.total = 0
        self.rate_limited = 0
        self.dropped = 0
        self.lost = 0
        self.faults.clear()
